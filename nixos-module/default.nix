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
  utils,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.mm-status-sync;
  shared = import ./settings.nix { inherit lib; };

  # One daemon a server: the top-level options (`enable`) are the unnamed one, each `instances.<name>` another,
  # with its own config file, token, state directory and unit name.
  servers =
    lib.optional cfg.enable {
      unit = "mm-status-sync";
      file = "config.env";
      stateDirectory = "mm-status-sync";
      prefix = "services.mm-status-sync";
      server = cfg;
    }
    ++ lib.mapAttrsToList (name: server: {
      unit = "mm-status-sync-${name}";
      file = "${name}.env";
      stateDirectory = "mm-status-sync/${name}";
      prefix = "services.mm-status-sync.instances.${name}";
      inherit server;
    }) cfg.instances;

  serverOptions = shared.serverOptions {
    file = "/etc/mm-status-sync/config.env (an instance: /etc/mm-status-sync/NAME.env)";
    tokenNote = ''
      In system mode it is passed with LoadCredential= (read by systemd as root, so it may be 0600 root;
      a new token needs a restart); in user mode the daemon reads it itself on start and on reload, and
      systemd specifiers such as `%h` (home directory) may be used.
    '';
  };

  # Stable path, so the unit file does not change with the settings: only X-Reload-Triggers does, and a
  # switch then reloads the service.
  configPath = d: "/etc/mm-status-sync/${d.file}";
  configFile = d: pkgs.writeText "${d.unit}.env" (shared.render d.server.settings);

  # Shared by both modes. The token file is re-read on reload in user mode; a credential is fixed at start.
  service = d: {
    description = "Mattermost \"in a meeting\" status while a camera is in use";
    environment = {
      MM_STATUS_SYNC_CONFIG = configPath d;
    };
    reloadTriggers = [ (configFile d) ];
    serviceConfig = {
      Type = "notify";
      ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe cfg.package) "run" ] ++ d.server.extraArgs);
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      Restart = "on-failure";
      RestartSec = "10s";
      # The daemon pings at half this period.
      WatchdogSec = "120s";
      # On SIGTERM the previous status is restored first, which needs the server.
      TimeoutStopSec = "60s";
      # The daemon keeps its backup in $STATE_DIRECTORY: each server its own.
      StateDirectory = d.stateDirectory;
      EnvironmentFile = lib.optional (d.server.environmentFile != null) d.server.environmentFile;
    };
  };

  systemService =
    d:
    lib.mkMerge [
      (service d)
      {
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        environment.MM_STATUS_SYNC_TOKEN_FILE = lib.mkIf (d.server.tokenFile != null) "%d/token";
        serviceConfig = systemHardening // {
          LoadCredential = lib.optional (d.server.tokenFile != null) "token:${d.server.tokenFile}";
        };
      }
    ];

  # No namespacing options: in a user manager they need a user namespace, and inside one even the user's
  # own /proc/PID/fd links are unreadable.
  userService =
    d:
    lib.mkMerge [
      (service d)
      {
        wantedBy = [ "graphical-session.target" ];
        partOf = [ "graphical-session.target" ];
        after = [ "graphical-session.target" ];
        environment.MM_STATUS_SYNC_TOKEN_FILE = lib.mkIf (d.server.tokenFile != null) d.server.tokenFile;
        serviceConfig.NoNewPrivileges = true;
      }
    ];

  units = f: lib.listToAttrs (map (d: lib.nameValuePair d.unit (f d)) servers);

  # Same hardening as dist/systemd/mm-status-sync.service (tests/packaging.rs checks every directive is here).
  systemHardening = {
    StateDirectoryMode = "0700";
    # Reading other users' /proc/PID/fd needs both: DAC_READ_SEARCH lists the fd directory, SYS_PTRACE reads
    # the links. Inside a user namespace (PrivateUsers=yes) every link is unreadable.
    DynamicUser = true;
    AmbientCapabilities = [
      "CAP_SYS_PTRACE"
      "CAP_DAC_READ_SEARCH"
    ];
    CapabilityBoundingSet = [
      "CAP_SYS_PTRACE"
      "CAP_DAC_READ_SEARCH"
    ];
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
  options.services.mm-status-sync = {
    enable = lib.mkEnableOption "mm-status-sync, which marks you \"in a meeting\" on Mattermost while a camera is in use";

    package = lib.mkPackageOption pkgs "mm-status-sync" { };

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

  }
  // serverOptions
  // {
    instances = mkOption {
      default = { };
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
      type = types.attrsOf (types.submodule { options = serverOptions; });
    };
  };

  config = lib.mkIf (servers != [ ]) {
    assertions = lib.concatMap (d: shared.assertions d.prefix d.server) servers
      ++ lib.mapAttrsToList (name: _: shared.instanceNameAssertion "services.mm-status-sync" name) cfg.instances;

    environment.etc = lib.listToAttrs (
      map (d: lib.nameValuePair "mm-status-sync/${d.file}" { source = configFile d; }) servers
    );

    systemd.services = lib.mkIf (cfg.mode == "system") (units systemService);
    systemd.user.services = lib.mkIf (cfg.mode == "user") (units userService);
  };
}
