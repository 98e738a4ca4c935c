# Home Manager module for mm-status-sync: the user service of the NixOS module's user mode, for Nix users who
# manage their desktop with Home Manager (on NixOS or any other distribution). Same option names and types as the
# NixOS module (both take them from settings.nix), minus `mode`: a Home Manager service is always the user's.
#
# `settings` becomes ~/.config/mm-status-sync/config.env (xdg.configFile); the unit names it and carries it in
# X-Reload-Triggers, so a `home-manager switch` that changes settings reloads the daemon (SIGHUP) instead of
# restarting it. The daemon reads the token from `tokenFile` itself; the token never enters the Nix store.
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

  # One daemon a server, as in the NixOS module: the top-level options, then each `instances.<name>`.
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
    file = "~/.config/mm-status-sync/config.env (an instance: ~/.config/mm-status-sync/NAME.env)";
    tokenNote = ''
      The daemon reads it itself, at start and on reload (so a new token needs only a reload); keep it
      readable by you alone. systemd specifiers such as `%h` (home directory) may be used.
    '';
  };

  # As NixOS's utils.escapeSystemdExecArgs, which Home Manager lacks: each argument a JSON string, `%` and `$`
  # doubled so systemd takes them literally.
  escapeExecArgs = lib.concatMapStringsSep " " (
    arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg)
  );

  configFile = d: pkgs.writeText "${d.unit}.env" (shared.render d.server.settings);

  # Environment= takes `"NAME=value"`, in which systemd reads `\"` and `\\` as a quote and a backslash.
  environment = name: value: "\"${name}=${lib.escape [ "\\" "\"" ] value}\"";

  # As dist/systemd/user/mm-status-sync.service. No namespacing options: in a user manager they need a user
  # namespace, and inside one even the user's own /proc/PID/fd links are unreadable.
  service = d: {
    Unit = {
      Description = "Mattermost \"in a meeting\" status while a camera is in use";
      PartOf = [ "graphical-session.target" ];
      After = [ "graphical-session.target" ];
      # Home Manager's activation (sd-switch) reloads a unit whose X-Reload-Triggers changed.
      X-Reload-Triggers = [ "${configFile d}" ];
    };
    Service = {
      Type = "notify";
      ExecStart = escapeExecArgs ([ (lib.getExe cfg.package) "run" ] ++ d.server.extraArgs);
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      Restart = "on-failure";
      RestartSec = "10s";
      # The daemon pings at half this period.
      WatchdogSec = "120s";
      # On SIGTERM the previous status is restored first, which needs the server.
      TimeoutStopSec = "60s";
      Environment = [
        (environment "MM_STATUS_SYNC_CONFIG" "${config.xdg.configHome}/mm-status-sync/${d.file}")
      ]
      ++ lib.optional (d.server.tokenFile != null) (environment "MM_STATUS_SYNC_TOKEN_FILE" d.server.tokenFile);
      EnvironmentFile = lib.optional (d.server.environmentFile != null) d.server.environmentFile;
      # ~/.local/state/mm-status-sync (or .../NAME), which the daemon takes from $STATE_DIRECTORY.
      StateDirectory = d.stateDirectory;
      NoNewPrivileges = true;
    };
    Install.WantedBy = [ "graphical-session.target" ];
  };
in
{
  options.services.mm-status-sync = {
    enable = lib.mkEnableOption "mm-status-sync, which marks you \"in a meeting\" on Mattermost while a camera is in use";

    package = lib.mkPackageOption pkgs "mm-status-sync" { };
  }
  // serverOptions
  // {
    instances = mkOption {
      default = { };
      example = lib.literalExpression ''
        {
          work = { tokenFile = "%h/.config/mm-status-sync/work.token"; settings.url = "https://mattermost.example.com"; };
          community = { tokenFile = "%h/.config/mm-status-sync/community.token"; settings.url = "https://community.example.org"; };
        }
      '';
      description = ''
        More daemons, one a Mattermost server, all marking you while your cameras are in use. Each `NAME` runs
        as the user service `mm-status-sync-NAME` with its own config file ~/.config/mm-status-sync/NAME.env,
        token and state directory (~/.local/state/mm-status-sync/NAME), so backups never mix. Independent of
        `enable`, which runs the daemon configured by the top-level options.
      '';
      type = types.attrsOf (types.submodule { options = serverOptions; });
    };
  };

  config = lib.mkIf (servers != [ ]) {
    assertions =
      lib.concatMap (d: shared.assertions d.prefix d.server) servers
      ++ lib.mapAttrsToList (name: _: shared.instanceNameAssertion "services.mm-status-sync" name) cfg.instances;

    xdg.configFile = lib.listToAttrs (
      map (d: lib.nameValuePair "mm-status-sync/${d.file}" { source = configFile d; }) servers
    );

    systemd.user.services = lib.listToAttrs (map (d: lib.nameValuePair d.unit (service d)) servers);
  };
}
