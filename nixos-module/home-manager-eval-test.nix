# Evaluates the Home Manager module with nixpkgs' lib alone (no nixpkgs, no Home Manager) and checks what it
# writes: the config file under xdg.configFile, the user unit in Home Manager's Unit/Service/Install form
# (Type=notify, ExecReload with SIGHUP, X-Reload-Triggers on the config file), the token left to the daemon,
# the assertions, and `instances.<name>`. The Home Manager options it writes to are stand-ins declared here (and in
# eval-stand-ins.nix), with the types Home Manager gives them (modules/systemd.nix, modules/misc/xdg.nix), so this
# runs anywhere `lib` does:
#   nix-instantiate --read-write-mode --eval --strict --json nixos-module/home-manager-eval-test.nix \
#     --arg lib 'import <nixpkgs.lib checkout>/lib' -A failures
# The flake runs it as `checks.<system>.home-manager-eval`. The result is { failures = [ ... ]; units = { ... }; }.
{ lib }:
let
  inherit (lib) types mkOption;
  standIns = import ./eval-stand-ins.nix { inherit lib; };
  inherit (standIns) package binary pkgs failedAssertions expect;

  # Home Manager: a unit is sections of keys whose values are primitives or lists of them; Unit has
  # X-Reload-Triggers, a list of packages or strings.
  primitive = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
  ];
  unitType = types.submodule {
    freeformType = types.attrsOf (types.attrsOf (types.either primitive (types.listOf primitive)));
    options.Unit.X-Reload-Triggers = mkOption {
      type = types.listOf (types.either types.package types.str);
      default = [ ];
    };
  };

  evaluate = standIns.evaluator {
    module = ./home-manager.nix;
    options = {
      xdg.configHome = mkOption { type = types.str; default = "/home/alice/.config"; };
      xdg.configFile = standIns.filesOption;
      systemd.user.services = standIns.unitsOption unitType;
    };
  };

  base = standIns.server // {
    tokenFile = "%h/.config/mm-status-sync/token";
    extraArgs = [ "--log-level=debug" ];
  };
  home = evaluate base;
  changed = evaluate (base // { settings = base.settings // { end-delay = 90; }; });
  tokenInSettings = evaluate (base // { settings = base.settings // { token = "secret"; }; });
  several = evaluate (
    base
    // {
      instances.work = {
        tokenFile = "/run/user/1000/secrets/mm-work";
        settings.url = "https://work.example.com";
      };
      instances.community = {
        tokenFile = "%h/.config/mm-status-sync/community.token";
        settings.url = "https://community.example.org";
      };
    }
  );

  unit = home.systemd.user.services.mm-status-sync;
  work = several.systemd.user.services.mm-status-sync-work;
  community = several.systemd.user.services.mm-status-sync-community;
  configSource = home.xdg.configFile."mm-status-sync/config.env".source;
  configText = builtins.readFile configSource;
in
{
  failures =
    expect "module assertions hold" (failedAssertions home == [ ])
    ++ expect "Type=notify" (unit.Service.Type == "notify")
    ++ expect "ExecStart runs the package's binary with extraArgs" (
      unit.Service.ExecStart == ''"${binary}" "run" "--log-level=debug"''
    )
    ++ standIns.extraArgsEscaped evaluate base (
      config: config.systemd.user.services.mm-status-sync.Service.ExecStart
    )
    ++ expect "ExecReload sends SIGHUP" (unit.Service.ExecReload == "${pkgs.coreutils}/bin/kill -HUP $MAINPID")
    ++ expect "Restart=on-failure, a watchdog, time to restore on stop" (
      unit.Service.Restart == "on-failure" && unit.Service ? WatchdogSec && unit.Service ? TimeoutStopSec
    )
    ++ expect "started with the graphical session" (
      unit.Install.WantedBy == [ "graphical-session.target" ] && unit.Unit.PartOf == [ "graphical-session.target" ]
    )
    ++ expect "the config file is written under xdg.configFile and named by MM_STATUS_SYNC_CONFIG" (
      lib.elem ''"MM_STATUS_SYNC_CONFIG=/home/alice/.config/mm-status-sync/config.env"'' unit.Service.Environment
    )
    ++ expect "exactly the settings that are set, in the config file, no token" (
      configText == standIns.serverConfigText
    )
    ++ expect "the daemon reads the token file itself" (
      lib.elem ''"MM_STATUS_SYNC_TOKEN_FILE=%h/.config/mm-status-sync/token"'' unit.Service.Environment
    )
    ++ expect "a settings change reloads: X-Reload-Triggers names the config file" (
      unit.Unit.X-Reload-Triggers == [ configSource ]
      && changed.systemd.user.services.mm-status-sync.Unit.X-Reload-Triggers != unit.Unit.X-Reload-Triggers
      && !(unit.Unit ? X-Restart-Triggers)
    )
    ++ expect "a settings change leaves the rest of the unit alone (so it is not restarted)" (
      removeAttrs changed.systemd.user.services.mm-status-sync.Unit [ "X-Reload-Triggers" ]
      == removeAttrs unit.Unit [ "X-Reload-Triggers" ]
      && changed.systemd.user.services.mm-status-sync.Service == unit.Service
    )
    ++ expect "state in its own StateDirectory" (unit.Service.StateDirectory == "mm-status-sync")
    ++ expect "no credentials, no capabilities, no namespacing" (
      lib.all (o: !(unit.Service ? ${o})) standIns.systemOnly
    )
    ++ standIns.storePathsRefused evaluate base
    ++ expect "a token in settings is refused" (failedAssertions tokenInSettings != [ ])
    ++ expect "instances: module assertions hold" (failedAssertions several == [ ])
    ++ expect "instances: a user service each, besides the single one" (
      lib.attrNames several.systemd.user.services == [
        "mm-status-sync"
        "mm-status-sync-community"
        "mm-status-sync-work"
      ]
    )
    ++ expect "instances: their own config file, token file and state directory" (
      lib.elem ''"MM_STATUS_SYNC_CONFIG=/home/alice/.config/mm-status-sync/work.env"'' work.Service.Environment
      && lib.elem ''"MM_STATUS_SYNC_TOKEN_FILE=/run/user/1000/secrets/mm-work"'' work.Service.Environment
      && work.Service.StateDirectory == "mm-status-sync/work"
      && community.Service.StateDirectory == "mm-status-sync/community"
      && builtins.readFile several.xdg.configFile."mm-status-sync/work.env".source
        == "MM_STATUS_SYNC_URL=\"https://work.example.com\"\n"
      && work.Unit.X-Reload-Triggers == [ several.xdg.configFile."mm-status-sync/work.env".source ]
    )
    ++ expect "nothing enabled, nothing written" (
      let
        off = evaluate { inherit package; };
      in
      off.systemd.user.services == { } && off.xdg.configFile == { }
    );

  units = {
    inherit unit work community;
  };
}
