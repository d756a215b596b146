# The subset of nixpkgs' package set that this repository's flake uses. Every "package" is a derivation
# that refuses to build: `nix flake check --no-build` only instantiates them.
{ lib, system }:
let
  inherit (builtins)
    all
    any
    attrNames
    concatStringsSep
    elem
    filter
    functionArgs
    intersectAttrs
    isFunction
    isString
    pathExists
    ;

  fail = who: msg: throw "stub nixpkgs: ${who}: ${msg}";
  check = who: conds: value: let failed = filter (c: !c.ok) conds; in
    if failed == [ ] then value else fail who (concatStringsSep "; " (map (c: c.msg) failed));
  unknownArgs = allowed: args: filter (n: !(elem n allowed)) (attrNames args);

  # A derivation that can be instantiated but not built.
  stubDrv =
    name: extra:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo 'stub nixpkgs: ${name} cannot be built offline' >&2; exit 1"
      ];
    }
    // extra;
  tool = name: stubDrv name { meta.mainProgram = name; };

  # Does the source (from lib.fileset.toSource) contain path p?
  covers =
    src: p:
    let
      t = toString p;
    in
    any (f: t == f || builtins.substring 0 (builtins.stringLength f + 1) t == f + "/") src.files;

  buildRustPackage =
    args:
    let
      who = "rustPlatform.buildRustPackage (${args.pname or "?"})";
      src = args.src or (fail who "src is missing");
      lockFile = args.cargoLock.lockFile or null;
      flags = args.cargoBuildFlags or [ ];
      exampleIndex = builtins.genList (i: i) (builtins.length flags);
      examples = map (i: builtins.elemAt flags (i + 1)) (
        filter (i: builtins.elemAt flags i == "--example" && i + 1 < builtins.length flags) exampleIndex
      );
      manifest = builtins.fromTOML (builtins.readFile (src.root + "/Cargo.toml"));
    in
    check who [
      { ok = isString (args.pname or null) && isString (args.version or null); msg = "pname and version must be strings"; }
      { ok = src ? _stubSource; msg = "src must come from lib.fileset.toSource"; }
      { ok = covers src (src.root + "/Cargo.toml") && covers src (src.root + "/src"); msg = "src lacks Cargo.toml or src/"; }
      { ok = args ? cargoLock || args ? cargoHash; msg = "needs cargoLock.lockFile or cargoHash"; }
      {
        ok = unknownArgs [ "lockFile" "lockFileContents" "outputHashes" "allowBuiltinFetchGit" ] (args.cargoLock or { }) == [ ];
        msg = "unknown cargoLock arguments ${toString (unknownArgs [ "lockFile" "lockFileContents" "outputHashes" "allowBuiltinFetchGit" ] (args.cargoLock or { }))}";
      }
      { ok = lockFile == null || (pathExists lockFile && covers src lockFile); msg = "cargoLock.lockFile ${toString lockFile} is missing or not part of src"; }
      { ok = args.version == manifest.package.version; msg = "version ${args.version} differs from Cargo.toml's ${manifest.package.version}"; }
      { ok = args ? meta.mainProgram && args ? meta.license; msg = "meta.mainProgram and meta.license are required"; }
      {
        ok = all (e: pathExists (src.root + "/examples/${e}.rs") && covers src (src.root + "/examples/${e}.rs")) examples;
        msg = "cargoBuildFlags name example(s) ${toString examples} without examples/<name>.rs in src";
      }
    ] (stubDrv "${args.pname}-${args.version}" {
      inherit (args) pname version meta;
      overrideAttrs = f: buildRustPackage (args // f args);
    });

  # Arguments of dockerTools.buildLayeredImage / streamLayeredImage in nixpkgs.
  layeredImageArgs = [ "name" "tag" "fromImage" "contents" "config" "architecture" "created" "mtime" "uid" "gid" "uname" "gname" "maxLayers" "extraCommands" "fakeRootCommands" "enableFakechroot" "includeStorePaths" "includeNixDB" "passthru" "meta" "compressor" "layeringPipeline" "debug" ];
  # Keys of the OCI image config (image-spec config.md) plus Docker's Healthcheck; dockerTools passes
  # unknown keys through silently, and runtimes ignore them.
  ociConfigKeys = [ "User" "ExposedPorts" "Env" "Entrypoint" "Cmd" "Volumes" "WorkingDir" "Labels" "StopSignal" "ArgsEscaped" "Healthcheck" ];

  pkgs = {
    inherit lib system;
    stdenv.hostPlatform = {
      inherit system;
      isLinux = elem system lib.platforms.linux;
      isDarwin = elem system lib.platforms.darwin;
    };

    callPackage =
      fn: overrides:
      let
        f = if isFunction fn then fn else import fn;
        wanted = functionArgs f;
        args = intersectAttrs wanted pkgs // overrides;
        missing = filter (n: !(args ? ${n}) && !wanted.${n}) (attrNames wanted);
      in
      if missing != [ ] then fail "callPackage" "no value for ${toString missing}" else f args;

    rustPlatform = { inherit buildRustPackage; };

    dockerTools = {
      caCertificates = stubDrv "ca-certificates" { };
      fakeNss = stubDrv "fake-nss" { };
      buildLayeredImage =
        args:
        let
          who = "dockerTools.buildLayeredImage";
          config = args.config or { };
        in
        check who [
          { ok = unknownArgs layeredImageArgs args == [ ]; msg = "unknown arguments ${toString (unknownArgs layeredImageArgs args)}"; }
          { ok = unknownArgs ociConfigKeys config == [ ]; msg = "unknown OCI config keys ${toString (unknownArgs ociConfigKeys config)}"; }
          { ok = (args.created or "1970-01-01T00:00:01Z") != "now"; msg = "created = \"now\" makes the image unreproducible"; }
        ] (stubDrv "docker-image-${args.name}.tar.gz" { imageTag = args.tag or null; });
    };

    mkShell =
      args:
      check "mkShell" [
        { ok = unknownArgs [ "name" "packages" "inputsFrom" "buildInputs" "nativeBuildInputs" "shellHook" "env" ] args == [ ]; msg = "unknown arguments"; }
      ] (stubDrv (args.name or "nix-shell") { });

    writeText = name: text: builtins.seq text (stubDrv name { });

    testers.runNixOSTest =
      args:
      let
        who = "testers.runNixOSTest";
        nodeArgs = {
          config = { };
          inherit lib pkgs;
          modulesPath = "/stub/nixos/modules";
        };
        nodes = builtins.mapAttrs (_: m: if isFunction m then m nodeArgs else m) (args.nodes or { });
      in
      check who [
        { ok = unknownArgs [ "name" "nodes" "testScript" "defaults" "extraPythonPackages" "globalTimeout" "interactive" "meta" "skipLint" "skipTypeCheck" "enableOCR" "passthru" "hostPkgs" "node" "sshBackdoor" "qemu" ] args == [ ]; msg = "unknown arguments"; }
        { ok = isString (args.testScript or null); msg = "testScript must be a string"; }
        { ok = nodes != { } && all builtins.isAttrs (builtins.attrValues nodes); msg = "nodes must be NixOS modules"; }
      ] (stubDrv "vm-test-run-${args.name}" {
        inherit (args) testScript;
        inherit nodes;
      });

    cacert = stubDrv "cacert" { };
    curl = tool "curl";
    jq = tool "jq";
    cargo = tool "cargo";
    clippy = tool "clippy";
    rustfmt = tool "rustfmt";
    rust-analyzer = tool "rust-analyzer";
    nixfmt = tool "nixfmt";
    nodejs = tool "node";
  };
in
pkgs
