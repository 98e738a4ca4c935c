"""A tiny stand-in for a Mattermost server, for the NixOS VM test (nixos-module/test.nix).

It keeps one user, answers the endpoints mm-status-sync uses the way the real server does (see
docs/mattermost-semantics.md; tests/support/fake_mattermost.rs is the complete fake), and appends every request to a JSON-lines log
so the test can see what the daemon did. Usage: fake-mattermost.py PORT TOKEN LOG_FILE
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

USER_ID = "u" * 26
STATUSES = ("online", "away", "offline", "dnd")
DURATIONS = ("thirty_minutes", "one_hour", "four_hours", "today", "this_week", "date_and_time")

port, token, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = Lock()
user = {"id": USER_ID, "username": "alice", "delete_at": 0, "auth_service": "", "email": "alice@example.com",
        "nickname": "", "first_name": "Alice", "last_name": "", "position": "", "roles": "system_user",
        "locale": "en", "disable_welcome_email": False,
        "timezone": {"useAutomaticTimezone": "true", "manualTimezone": "", "automaticTimezone": "UTC"},
        "props": {"customStatus": json.dumps({"emoji": "coffee", "text": "Working", "duration": "",
                                              "expires_at": "0001-01-01T00:00:00Z"})}}
status = {"user_id": USER_ID, "status": "online", "manual": False, "last_activity_at": 0, "dnd_end_time": 0}


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, error_id, message):
        self.reply(code, {"id": error_id, "message": message, "detailed_error": "", "request_id": "r" * 26,
                          "status_code": code})

    def handle_request(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with open(log_path, "a") as log:
            log.write(json.dumps({"method": self.command, "path": self.path, "body": raw.decode()}) + "\n")
        if self.path == "/api/v4/system/ping":
            return self.reply(200, {"status": "OK"})
        auth = self.headers.get("Authorization", "")
        if auth not in ("Bearer " + token, "Token " + token):
            return self.error(401, "api.context.session_expired.app_error",
                              "Invalid or expired session, please login again.")
        parts = self.path.split("?")[0].split("/")
        if parts[:4] != ["", "api", "v4", "users"] or len(parts) < 5 or parts[4] not in ("me", USER_ID):
            return self.error(404, "api.context.404.app_error", "Sorry, we could not find the page.")
        route = (self.command, "/".join(parts[5:]))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with lock:
            if route == ("GET", ""):
                return self.reply(200, user)
            if route == ("GET", "status"):
                return self.reply(200, status)
            if route == ("PUT", "status"):
                if not isinstance(body, dict):
                    return self.error(400, "api.context.invalid_body_param.app_error", "Invalid or missing status in request body.")
                if body.get("user_id") != USER_ID:
                    return self.error(400, "api.context.invalid_body_param.app_error", "Invalid or missing user_id in request body.")
                new = body.get("status")
                if new not in STATUSES:
                    return self.error(400, "api.context.invalid_body_param.app_error", "Invalid or missing status in request body.")
                end = int(body.get("dnd_end_time") or 0) if new == "dnd" else 0
                status.update(status=new, manual=new != "online", dnd_end_time=end - end % 60 if end > 0 else end)
                if new == "online":
                    status["last_activity_at"] = int(time.time() * 1000)
                return self.reply(200, status)
            if route == ("PUT", "status/custom"):
                if not isinstance(body, dict) or not (body.get("emoji") or body.get("text")):
                    return self.error(400, "api.context.invalid_body_param.app_error", "Invalid or missing custom_status in request body.")
                duration = body.get("duration") or ""
                if duration and (duration not in DURATIONS or not body.get("expires_at")):
                    return self.error(400, "api.context.invalid_body_param.app_error", "Invalid or missing custom_status in request body.")
                stored = {"emoji": body.get("emoji", ""), "text": body.get("text", "")[:100],
                          "duration": duration or ("date_and_time" if body.get("expires_at") else ""),
                          "expires_at": body.get("expires_at") or "0001-01-01T00:00:00Z"}
                user["props"]["customStatus"] = json.dumps(stored)
                return self.reply(200, {"status": "OK"})
            if route == ("DELETE", "status/custom"):
                user["props"]["customStatus"] = ""
                return self.reply(200, {"status": "OK"})
            if route == ("POST", "status/custom/recent/delete"):
                return self.reply(200, {"status": "OK"})
        return self.error(404, "api.context.404.app_error", "Sorry, we could not find the page.")

    do_GET = do_PUT = do_POST = do_DELETE = handle_request

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
