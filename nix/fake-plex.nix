# The fake plex.tv from tests/support/fake_plex.rs as a program (examples/fake-plex.rs), for the NixOS
# VM test and for trying the whole login flow by hand without a Plex account.
{ plex-oidc }:
plex-oidc.overrideAttrs (old: {
  pname = "fake-plex";
  cargoBuildFlags = [
    "--example"
    "fake-plex"
  ];
  doCheck = false;
  doInstallCheck = false;
  # cargo leaves examples in target/<triple>/release/examples/, which the default install hook skips.
  installPhase = ''
    runHook preInstall
    install -Dm755 "$(find target -path '*/release/examples/fake-plex' -type f | head -n 1)" "$out/bin/fake-plex"
    runHook postInstall
  '';
  meta = old.meta // {
    description = "A fake plex.tv for testing plex-oidc";
    mainProgram = "fake-plex";
  };
})
