# NixOS module for mm-status-sync: renders `settings` into the daemon's own config file so a settings change
# reloads the daemon (SIGHUP) instead of restarting it, and passes the token as a systemd credential so it
# never reaches the Nix store.
#
# mode = "system": one service for the whole machine, watching every user's processes (needs two capabilities).
# mode = "user": a user service started with each graphical session, watching only that user's processes.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.mm-status-sync;
  shared = import ./settings.nix { inherit lib; };
  # The units' parts both modules share: one daemon a server, ExecStart, reload, token, environment.
  unit = import ./unit.nix { inherit lib; };

  # A unit in either mode. The config file is named by a stable path under /etc; the store file behind it is
  # the reload trigger.
  service =
    { credential, hardening }:
    d: {
      inherit (unit) description;
      environment = unit.environment {
        configPath = "/etc/mm-status-sync/${d.file}";
        inherit credential;
      } d;
      reloadTriggers = [ (unit.configFile pkgs d) ];
      serviceConfig =
        unit.service {
          inherit (cfg) package;
          inherit pkgs credential;
        } d
        // hardening;
    };

  # The token as a credential: systemd reads it as root, the service runs as a dynamic user.
  systemService =
    d:
    service {
      credential = true;
      hardening = systemHardening;
    } d
    // {
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
    };

  userService =
    d:
    service {
      credential = false;
      hardening = unit.userHardening;
    } d
    // {
      wantedBy = [ unit.sessionTarget ];
      partOf = [ unit.sessionTarget ];
      after = [ unit.sessionTarget ];
    };

  # All the system service may do beyond a dynamic user's rights. Reading other users' /proc/PID/fd needs both:
  # DAC_READ_SEARCH lists the fd directory, SYS_PTRACE reads the links.
  capabilities = [
    "CAP_SYS_PTRACE"
    "CAP_DAC_READ_SEARCH"
  ];

  # Same hardening as dist/systemd/mm-status-sync.service (tests/packaging.rs checks every directive of that unit
  # is here or in unit.nix).
  systemHardening = {
    StateDirectoryMode = "0700";
    DynamicUser = true;
    AmbientCapabilities = capabilities;
    CapabilityBoundingSet = capabilities;
    # Inside a user namespace (PrivateUsers=yes) every /proc/PID/fd link is unreadable.
    PrivateUsers = false;
    NoNewPrivileges = true;
    # inotify watches /dev/video*, so /dev stays the host's; the daemon never opens a device node.
    DevicePolicy = "closed";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateMounts = true;
    ProcSubset = "pid";
    ProtectProc = "default";
    ProtectClock = true;
    ProtectControlGroups = true;
    ProtectHostname = true;
    ProtectKernelLogs = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    KeyringMode = "private";
    UMask = "0077";
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
    ];
    SystemCallArchitectures = "native";
    # @privileged stays allowed: it holds capset, which dropping the capabilities before a hook command needs.
    SystemCallFilter = [
      "@system-service"
      "~@resources"
    ];
    SystemCallErrorNumber = "EPERM";
  };
in
{
  options.services.mm-status-sync = shared.moduleOptions {
    inherit pkgs;
    file = "/etc/mm-status-sync/config.env (an instance: /etc/mm-status-sync/NAME.env)";
    tokenNote = ''
      In system mode it is passed with LoadCredential= (read by systemd as root, so it may be 0600 root;
      a new token needs a restart); in user mode the daemon reads it itself on start and on reload, and
      systemd specifiers such as `%h` (home directory) may be used.
    '';
    instances = {
      example = lib.literalExpression ''
        {
          work = { tokenFile = "/run/secrets/mm-work"; settings.url = "https://mattermost.example.com"; };
          community = { tokenFile = "/run/secrets/mm-community"; settings.url = "https://community.example.org"; };
        }
      '';
      description = ''
        More daemons, one a Mattermost server, all marking the same user while the same cameras are in use.
        Each `NAME` runs as the service `mm-status-sync-NAME` (in `mode`) with its own config file
        /etc/mm-status-sync/NAME.env, token and state directory (mm-status-sync/NAME), so backups never mix.
        Independent of `enable`, which runs the daemon configured by the top-level options.
      '';
    };
  }
  // {
    mode = mkOption {
      type = types.enum [
        "system"
        "user"
      ];
      default = "system";
      description = ''
        `system`: one service for the machine, watching every user's processes (it gets CAP_SYS_PTRACE and
        CAP_DAC_READ_SEARCH, nothing else). `user`: a user service started with each graphical session,
        watching only that user's processes, without privileges. In user mode a settings change takes effect
        after `systemctl --user reload mm-status-sync`.
      '';
    };
  };

  config = lib.mkIf (unit.servers cfg != [ ]) {
    assertions = unit.assertions cfg;

    # Stable paths, so the units do not change with the settings (see unit.configFile).
    environment.etc = unit.configFiles pkgs cfg;

    systemd.services = lib.mkIf (cfg.mode == "system") (unit.units cfg systemService);
    systemd.user.services = lib.mkIf (cfg.mode == "user") (unit.units cfg userService);
  };
}
