# NixOS VM test (flake check `nixos`): the system service against a fake Mattermost server, with a fake camera
# (a character device node held open by `sleep`). Checks that a meeting sets DND and the message, that its end
# restores the previous status, that a settings change reloads the daemon instead of restarting it, and that
# stopping the service mid-meeting restores the status first.
{ self }:
{ lib, ... }:
let
  token = "vm-test-token";
  port = 8065;
in
{
  name = "mm-status-sync";

  nodes.machine =
    { config, pkgs, ... }:
    {
      imports = [ self.nixosModules.default ];

      environment.systemPackages = [
        config.services.mm-status-sync.package
        pkgs.curl
        pkgs.jq
      ];

      systemd.tmpfiles.rules = [
        "d /run/fakecam 0755 root root -"
        # A /dev/null twin: the daemon matches paths, never opens the node.
        "c /run/fakecam/video0 0666 root root - 1:3"
        "d /run/keys 0750 root root -"
        "f+ /run/keys/mm-status-sync-token 0600 root root - ${token}"
      ];

      systemd.services.fake-mattermost = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig = {
          ExecStart = "${pkgs.python3.interpreter} ${./fake-mattermost.py} ${toString port} ${token} /var/lib/fake-mattermost/requests.jsonl";
          StateDirectory = "fake-mattermost";
        };
      };

      services.mm-status-sync = {
        enable = true;
        tokenFile = "/run/keys/mm-status-sync-token";
        settings = {
          url = "http://127.0.0.1:${toString port}";
          devices = [ "/run/fakecam/video*" ];
          start-delay = 1;
          end-delay = 1;
          interval = 10;
          log-level = "debug";
        };
      };
      # Started by the test script once the fake server listens.
      systemd.services.mm-status-sync.wantedBy = lib.mkForce [ ];

      specialisation.new-message.configuration = {
        services.mm-status-sync.settings.meeting-message = " [On a call]";
      };
    };

  testScript =
    { nodes, ... }:
    let
      newMessage = "${nodes.machine.system.build.toplevel}/specialisation/new-message/bin/switch-to-configuration";
    in
    ''
      def mattermost(path, jq_filter):
          """A shell command that succeeds when jq_filter holds for GET /api/v4/users/me<path>."""
          return (
              "curl -sf -H 'Authorization: Bearer ${token}' http://127.0.0.1:${toString port}/api/v4/users/me"
              + path + " | jq -e '" + jq_filter + "'"
          )

      def custom_text_is(text):
          return mattermost("", '.props.customStatus | fromjson | .text == "' + text + '"')

      def status_is(status):
          return mattermost("/status", '.status == "' + status + '"')

      def main_pid():
          return machine.succeed("systemctl show -P MainPID mm-status-sync.service").strip()

      def start_call():
          machine.succeed("systemd-run --unit=fake-call sh -c 'exec sleep 600 3</run/fakecam/video0'")

      machine.wait_for_unit("fake-mattermost.service")
      machine.wait_for_open_port(${toString port})
      machine.succeed("systemctl start mm-status-sync.service")
      machine.wait_for_unit("mm-status-sync.service")
      machine.succeed(
          "MM_STATUS_SYNC_CONFIG=/etc/mm-status-sync/config.env"
          + " MM_STATUS_SYNC_TOKEN_FILE=/run/keys/mm-status-sync-token mm-status-sync check"
      )

      with subtest("a call sets DND and the message, its end restores the previous status"):
          start_call()
          machine.wait_until_succeeds(status_is("dnd"), timeout=60)
          machine.wait_until_succeeds(custom_text_is("Working [In a meeting]"), timeout=60)
          machine.succeed("systemctl stop fake-call.service")
          machine.wait_until_succeeds(status_is("online"), timeout=60)
          machine.wait_until_succeeds(custom_text_is("Working"), timeout=60)

      with subtest("a settings change reloads the daemon, which then uses the new message"):
          pid = main_pid()
          machine.succeed("${newMessage} test")
          machine.wait_for_unit("mm-status-sync.service")
          assert main_pid() == pid, "the daemon was restarted instead of reloaded"
          machine.succeed("grep -q 'On a call' /etc/mm-status-sync/config.env")
          start_call()
          machine.wait_until_succeeds(custom_text_is("Working [On a call]"), timeout=60)
          machine.succeed("systemctl stop fake-call.service")
          machine.wait_until_succeeds(custom_text_is("Working"), timeout=60)

      with subtest("systemctl reload keeps the daemon running"):
          pid = main_pid()
          machine.succeed("systemctl reload mm-status-sync.service")
          machine.succeed("systemctl is-active mm-status-sync.service")
          assert main_pid() == pid

      with subtest("stopping the service mid-call restores the status first"):
          start_call()
          machine.wait_until_succeeds(status_is("dnd"), timeout=60)
          machine.succeed("systemctl stop mm-status-sync.service")
          machine.succeed(status_is("online"))
          machine.succeed(custom_text_is("Working"))
          machine.succeed("systemctl stop fake-call.service")
    '';
}
