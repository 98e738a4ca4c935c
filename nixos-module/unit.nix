# The daemon's units as both modules assemble them: the NixOS module (default.nix) as a system or a user service,
# the Home Manager module (home-manager.nix) as a user service. Here is what they share: one daemon a server
# (`instances`), its config file, ExecStart and the reload with SIGHUP, the token's way to the daemon, the
# environment it reads, the assertions and the user service's hardening. Each module keeps only its own form of
# a unit (NixOS's `serviceConfig`, Home Manager's Unit/Service/Install sections) and what only it does.
{ lib }:
let
  shared = import ./settings.nix { inherit lib; };
in
rec {
  # One daemon a server: the top-level options (`enable`) are the unnamed one, each `instances.<name>` another,
  # with its own config file, token, state directory and unit name.
  servers =
    cfg:
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

  # An attribute set of one unit a server, named after it: `service` makes the unit of a server.
  units = cfg: service: lib.listToAttrs (map (d: lib.nameValuePair d.unit (service d)) (servers cfg));

  assertions =
    cfg:
    lib.concatMap (d: shared.assertions d.prefix d.server) (servers cfg)
    ++ lib.mapAttrsToList (name: _: shared.instanceNameAssertion "services.mm-status-sync" name) cfg.instances;

  # The daemon's config file of a server, in the Nix store. The unit names it by a stable path (the file under
  # /etc or ~/.config), so the unit does not change with the settings: only its reload trigger does, and a
  # switch then reloads the service (SIGHUP) instead of restarting it.
  configFile = pkgs: d: pkgs.writeText "${d.unit}.env" (shared.render d.server.settings);

  # The config files of all servers, by their path under the configuration directory (environment.etc,
  # xdg.configFile).
  configFiles =
    pkgs: cfg:
    lib.listToAttrs (
      map (d: lib.nameValuePair "mm-status-sync/${d.file}" { source = configFile pkgs d; }) (servers cfg)
    );

  description = "Mattermost \"in a meeting\" status while a camera is in use";

  # As NixOS's utils.escapeSystemdExecArgs does it (Home Manager has no such function, so both modules use this
  # one): each argument a JSON string, `%` and `$` doubled so systemd takes them literally.
  escapeExecArgs = lib.concatMapStringsSep " " (
    arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg)
  );

  # The variables the daemon's environment gets: where its config file is (`configPath`) and where the token is.
  # The token reaches the daemon one of two ways. As a credential (`credential = true`, the system service):
  # systemd reads the file as root at start and the daemon finds the copy at %d/token, so the file may be 0600
  # root, and a new token needs a restart. Otherwise (user services) the daemon reads the file itself, at start
  # and on reload, with the user's rights.
  environment =
    { configPath, credential }:
    d:
    {
      MM_STATUS_SYNC_CONFIG = configPath;
    }
    // lib.optionalAttrs (d.server.tokenFile != null) {
      MM_STATUS_SYNC_TOKEN_FILE = if credential then "%d/token" else d.server.tokenFile;
    };

  # The [Service] settings every unit of the daemon has, in both modules and both modes, and the token
  # credential where the token is one.
  service =
    {
      package,
      pkgs,
      credential,
    }:
    d:
    {
      Type = "notify";
      ExecStart = escapeExecArgs ([ (lib.getExe package) "run" ] ++ d.server.extraArgs);
      ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
      Restart = "on-failure";
      RestartSec = "10s";
      # The daemon pings at half this period.
      WatchdogSec = "120s";
      # On SIGTERM the previous status is restored first, which needs the server.
      TimeoutStopSec = "60s";
      # The daemon keeps its backup in $STATE_DIRECTORY: each server its own (for a user service under
      # ~/.local/state).
      StateDirectory = d.stateDirectory;
      # Read at start only.
      EnvironmentFile = lib.optional (d.server.environmentFile != null) d.server.environmentFile;
    }
    // lib.optionalAttrs credential {
      LoadCredential = lib.optional (d.server.tokenFile != null) "token:${d.server.tokenFile}";
    };

  # A user service's hardening, as dist/systemd/user/mm-status-sync.service. No namespacing options: in a user
  # manager they need a user namespace, and inside one even the user's own /proc/PID/fd links are unreadable.
  userHardening = {
    NoNewPrivileges = true;
  };

  # A user service starts and stops with the graphical session.
  sessionTarget = "graphical-session.target";
}
