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

  # Stable path, so the unit file does not change with the settings: only X-Reload-Triggers does, and a
  # switch then reloads the service.
  configPath = "/etc/mm-status-sync/config.env";

  # One option per key of the binary (`mm-status-sync config --keys`; tests/packaging.rs compares the lists),
  # with the binary's default. null means "not set": the binary's own default or fallback applies.
  setting =
    type: default: description:
    mkOption { inherit type default description; };

  line = types.singleLineStr;

  leaseSeconds = types.addCheck types.ints.unsigned (n: n == 0 || (n >= 300 && n <= 604800)) // {
    description = "0, or an integer between 300 and 604800 (both inclusive)";
  };

  variableName = key: "MM_STATUS_SYNC_" + lib.toUpper (builtins.replaceStrings [ "-" ] [ "_" ] key);

  renderValue =
    value:
    if builtins.isBool value then
      lib.boolToString value
    else if builtins.isList value then
      lib.concatStringsSep "," value
    else
      toString value;

  # The config file strips one pair of matching quotes around a value and interprets nothing inside them.
  quote = text: if lib.hasInfix "'" text then "\"${text}\"" else "'${text}'";

  configText = lib.concatStrings (
    lib.mapAttrsToList (key: value: "${variableName key}=${quote (renderValue value)}\n") (
      lib.filterAttrs (_: value: value != null) cfg.settings
    )
  );

  configFile = pkgs.writeText "mm-status-sync-config.env" configText;

  # Shared by both modes. The token file is re-read on reload in user mode; a credential is fixed at start.
  service = {
    description = "Mattermost \"in a meeting\" status while a camera is in use";
    environment = {
      MM_STATUS_SYNC_CONFIG = configPath;
    };
    reloadTriggers = [ configFile ];
    serviceConfig = {
      Type = "notify";
      ExecStart = utils.escapeSystemdExecArgs ([ (lib.getExe cfg.package) "run" ] ++ cfg.extraArgs);
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      Restart = "on-failure";
      RestartSec = "10s";
      # The daemon pings at half this period.
      WatchdogSec = "120s";
      # On SIGTERM the previous status is restored first, which needs the server.
      TimeoutStopSec = "60s";
      StateDirectory = "mm-status-sync";
      EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;
    };
  };

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

    settings = mkOption {
      default = { };
      description = ''
        Configuration keys of mm-status-sync, written to `${configPath}`; a change reloads the daemon.
        Keys not listed here are passed through as they are (the daemon refuses unknown keys).
        The token is not a setting: use `tokenFile` (or `environmentFile`).
      '';
      type = types.submodule {
        freeformType = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.bool
              types.int
              line
              (types.listOf line)
            ]
          )
        );
        options = {
          devices =
            setting (types.listOf line) [ "/dev/video*" ]
              "Device path patterns; `*` matches any run of characters except `/`.";
          microphones =
            setting (types.listOf line) [ ]
              "Microphone device path patterns, such as /dev/snd/pcmC*D*c; empty: microphones are not watched.";
          ignore-processes =
            setting (types.listOf line) [ ]
              "Process names (as in /proc/PID/comm) that never count as using a camera.";
          require-streaming-for = setting (types.listOf line) [
            "pipewire"
            "wireplumber"
          ] "Process names that count only while they stream (`*` = every process).";
          start-delay =
            setting (types.ints.between 0 3600) 5
              "Seconds a camera must stay in use before the meeting starts.";
          end-delay =
            setting (types.ints.between 0 86400) 30
              "Seconds all cameras must stay free before the meeting ends.";
          interval = setting (types.ints.between 10 86400) 300 "Seconds between safety full scans.";
          state-dir =
            setting (types.nullOr line) null
              "Where the status backup is kept; null: the service's StateDirectory (/var/lib/mm-status-sync, or ~/.local/state/mm-status-sync in user mode).";
          log = setting (types.enum [
            "auto"
            "syslog"
            "stderr"
          ]) "auto" "Where logs go.";
          log-level = setting (types.enum [
            "error"
            "warn"
            "info"
            "debug"
          ]) "info" "Least severe messages logged.";
          dry-run = setting types.bool false "Never call the server, only log what would be done.";
          url =
            setting (types.nullOr line) null
              "Server base URL, https:// (http:// only for a loopback address). Required unless dry-run.";
          user-id =
            setting (types.nullOr line) null
              "Whose status to manage; null: the token's own user.";
          meeting-message =
            setting line " [In a meeting]"
              "Text appended to the current custom status during a meeting.";
          meeting-emoji = setting line "calendar" "Custom status emoji (a name) during a meeting.";
          meeting-status = setting (types.enum [
            "dnd"
            "away"
            "online"
            "offline"
            "keep"
          ]) "dnd" "Availability during a meeting.";
          ignore-if-offline = setting types.bool true "Do nothing while the user is offline.";
          ca-file =
            setting (types.nullOr line) null
              "PEM file with extra trusted CA certificates, for a server with a private CA.";
          lease =
            setting leaseSeconds 14400
              "Seconds ahead for the meeting status's expiry and the DND end, in case the daemon dies (0 disables).";
          on-meeting-start = setting (types.nullOr line) null "Command run when a meeting starts.";
          on-meeting-end = setting (types.nullOr line) null "Command run when a meeting ends.";
        };
      };
    };

    tokenFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/mm-status-sync-token";
      description = ''
        File holding the Mattermost personal access token. Not a Nix path: it must stay out of the Nix store.
        In system mode it is passed with LoadCredential= (read by systemd as root, so it may be 0600 root;
        a new token needs a restart); in user mode the daemon reads it itself on start and on reload, and
        systemd specifiers such as `%h` (home directory) may be used.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "File of `MM_STATUS_SYNC_KEY=value` lines for the service's environment (read at start only).";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--log-level=debug" ];
      description = "Extra arguments after `mm-status-sync run` (flags win over the config file; read at start only).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.tokenFile == null || !lib.hasPrefix builtins.storeDir cfg.tokenFile;
        message = "services.mm-status-sync.tokenFile must not be in the Nix store, which everyone can read";
      }
      {
        assertion = !(cfg.settings ? token) && !(cfg.settings ? token-file);
        message = "services.mm-status-sync.settings must not hold the token: use services.mm-status-sync.tokenFile";
      }
      {
        assertion = cfg.settings.url != null || cfg.settings.dry-run;
        message = "services.mm-status-sync.settings.url is required unless settings.dry-run is true";
      }
    ];

    environment.etc."mm-status-sync/config.env".source = configFile;

    systemd.services.mm-status-sync = lib.mkIf (cfg.mode == "system") (
      lib.mkMerge [
        service
        {
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          environment.MM_STATUS_SYNC_TOKEN_FILE = lib.mkIf (cfg.tokenFile != null) "%d/token";
          serviceConfig = systemHardening // {
            LoadCredential = lib.optional (cfg.tokenFile != null) "token:${cfg.tokenFile}";
          };
        }
      ]
    );

    # No namespacing options: in a user manager they need a user namespace, and inside one even the user's
    # own /proc/PID/fd links are unreadable.
    systemd.user.services.mm-status-sync = lib.mkIf (cfg.mode == "user") (
      lib.mkMerge [
        service
        {
          wantedBy = [ "graphical-session.target" ];
          partOf = [ "graphical-session.target" ];
          after = [ "graphical-session.target" ];
          environment.MM_STATUS_SYNC_TOKEN_FILE = lib.mkIf (cfg.tokenFile != null) cfg.tokenFile;
          serviceConfig.NoNewPrivileges = true;
        }
      ]
    );
  };
}
