# What the modules' evaluation tests (eval-test.nix for the NixOS module, home-manager-eval-test.nix for the Home
# Manager one) stand in for, with nixpkgs' lib alone: the package and the few `pkgs` pieces the modules use, the
# options NixOS and Home Manager both have that the modules write to, an evaluator, and the checks' helpers.
# Each test declares only the options of its own host (systemd.services or the Unit/Service/Install sections).
{ lib }:
let
  inherit (lib) types mkOption;
in
rec {
  package = {
    type = "derivation";
    name = "mm-status-sync-0.1.0";
    outPath = "/nix/store/00000000000000000000000000000000-mm-status-sync-0.1.0";
    meta.mainProgram = "mm-status-sync";
  };
  binary = "${package.outPath}/bin/mm-status-sync";
  pkgs = {
    writeText = name: text: builtins.toFile name text;
    coreutils = "/nix/store/11111111111111111111111111111111-coreutils";
    mm-status-sync = package;
  };

  # The unnamed server as both tests start from (each adds its token file), and the config file it yields.
  server = {
    enable = true;
    inherit package;
    settings.url = "https://mattermost.example.com";
    settings.end-delay = 60;
  };
  serverConfigText = "MM_STATUS_SYNC_END_DELAY=\"60\"\nMM_STATUS_SYNC_URL=\"https://mattermost.example.com\"\n";

  # A set of units by name, each of the host's unit type.
  unitsOption =
    unitType:
    mkOption {
      type = types.attrsOf unitType;
      default = { };
    };

  # Declared alike by NixOS and Home Manager: assertions and warnings, and a set of files by path with their
  # `source` (environment.etc, xdg.configFile).
  hostOptions = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };
  filesOption = mkOption {
    type = types.attrsOf (types.submodule { options.source = mkOption { type = types.str; }; });
    default = { };
  };

  # `evaluate settings` is the config of `module` with `services.mm-status-sync = settings`, over the host's
  # option declarations `options`.
  evaluator =
    { options, module }:
    settings:
    (lib.evalModules {
      modules = [
        { options = hostOptions // options; }
        module
        { services.mm-status-sync = settings; }
      ];
      specialArgs = { inherit pkgs; };
    }).config;

  failedAssertions = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  asList = value: if lib.isList value then value else [ value ];
  expect = name: ok: lib.optional (!ok) name;

  # The token and the environment file must stay out of the Nix store: `evaluate` and `base` are a test's.
  storePathsRefused =
    evaluate: base:
    expect "a tokenFile in the Nix store is refused" (
      failedAssertions (evaluate (base // { tokenFile = "/nix/store/22222222222222222222222222222222-token"; }))
      != [ ]
    )
    ++ expect "an environmentFile in the Nix store is refused" (
      failedAssertions (evaluate (base // { environmentFile = "/nix/store/33333333333333333333333333333333-env"; }))
      != [ ]
    );

  # Each of extraArgs is one word of ExecStart, with `%` and `$` doubled so systemd takes them literally.
  # `execStart` finds ExecStart in the config of the unnamed server's unit.
  extraArgsEscaped =
    evaluate: base: execStart:
    expect "extraArgs are quoted in ExecStart, % and $ doubled" (
      execStart (evaluate (base // { extraArgs = [ "100%" "$HOME" "a \"b\"" ]; }))
      == ''"${binary}" "run" "100%%" "$$HOME" "a \"b\""''
    );

  # Options of the system service that a user service must not have: capabilities and credentials need a
  # system manager, and namespacing in a user manager needs a user namespace, inside which even the user's own
  # /proc/PID/fd links are unreadable.
  systemOnly = [
    "PrivateUsers"
    "PrivateTmp"
    "PrivateMounts"
    "ProtectSystem"
    "ProtectHome"
    "DynamicUser"
    "RestrictNamespaces"
    "CapabilityBoundingSet"
    "AmbientCapabilities"
    "LoadCredential"
  ];
}
