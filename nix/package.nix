{
  lib,
  rustPlatform,
  cacert,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # Only what cargo and the tests read, so editing nix/ or the README does not rebuild the package.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../schema
      ../assets
      ../examples
      # tests/deploy_files.rs reads these.
      ../examples/deploy/config.json
      ../examples/deploy/fly.toml
      ../examples/deploy/kubernetes
      (lib.fileset.maybeMissing ../benches)
      (lib.fileset.difference ../tests (lib.fileset.maybeMissing ../tests/browser))
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The tests talk to in-process fakes on 127.0.0.1 only; the build sandbox keeps loopback.
  __darwinAllowLocalNetworking = true;
  # The HTTP client loads the system's root certificates when it is built, even in tests that only
  # talk to loopback; the sandbox has none.
  nativeCheckInputs = [ cacert ];

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/plex-oidc --help > /dev/null
    $out/bin/plex-oidc schema > /dev/null
    $out/bin/plex-oidc check --config examples/config.json
    runHook postInstallCheck
  '';

  meta = {
    inherit (cargoToml.package) description;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "plex-oidc";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
