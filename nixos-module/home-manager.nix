# Home Manager module for mm-status-sync: the user service of the NixOS module's user mode, for Nix users who
# manage their desktop with Home Manager (on NixOS or any other distribution). Same option names and types as the
# NixOS module (both take them from settings.nix, and build their units from unit.nix), minus `mode`: a Home
# Manager service is always the user's.
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
  cfg = config.services.mm-status-sync;
  shared = import ./settings.nix { inherit lib; };
  # The units' parts both modules share: one daemon a server, ExecStart, reload, token, environment.
  unit = import ./unit.nix { inherit lib; };

  # Environment= takes `"NAME=value"`, in which systemd reads `\"` and `\\` as a quote and a backslash.
  environment = name: value: "\"${name}=${lib.escape [ "\\" "\"" ] value}\"";

  # As dist/systemd/user/mm-status-sync.service, in Home Manager's Unit/Service/Install form.
  service = d: {
    Unit = {
      Description = unit.description;
      PartOf = [ unit.sessionTarget ];
      After = [ unit.sessionTarget ];
      # Home Manager's activation (sd-switch) reloads a unit whose X-Reload-Triggers changed.
      X-Reload-Triggers = [ "${unit.configFile pkgs d}" ];
    };
    Service =
      unit.service {
        inherit (cfg) package;
        inherit pkgs;
        credential = false;
      } d
      // unit.userHardening
      // {
        Environment = lib.mapAttrsToList environment (
          unit.environment {
            configPath = "${config.xdg.configHome}/mm-status-sync/${d.file}";
            credential = false;
          } d
        );
      };
    Install.WantedBy = [ unit.sessionTarget ];
  };
in
{
  options.services.mm-status-sync = shared.moduleOptions {
    inherit pkgs;
    file = "~/.config/mm-status-sync/config.env (an instance: ~/.config/mm-status-sync/NAME.env)";
    tokenNote = ''
      The daemon reads it itself, at start and on reload (so a new token needs only a reload); keep it
      readable by you alone. systemd specifiers such as `%h` (home directory) may be used.
    '';
    instances = {
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
    };
  };

  config = lib.mkIf (unit.servers cfg != [ ]) {
    assertions = unit.assertions cfg;

    xdg.configFile = unit.configFiles pkgs cfg;

    systemd.user.services = unit.units cfg service;
  };
}
