# OCI image: the binary's closure, CA certificates and a passwd entry for nobody; no shell.
#
#   docker load < "$(nix build .#oci-image --print-out-paths)"
{
  lib,
  dockerTools,
  plex-oidc,
}:
let
  port = 8080;
  stateDir = "/var/lib/plex-oidc";
in
dockerTools.buildLayeredImage {
  name = "plex-oidc";
  tag = plex-oidc.version;
  # A fixed date keeps the image digest a function of its contents.
  created = "1970-01-01T00:00:01Z";

  contents = [
    # plex.tv is reached over TLS; rustls reads the bundle from /etc/ssl/certs.
    dockerTools.caCertificates
    # /etc/passwd and /etc/group with nobody (65534).
    dockerTools.fakeNss
  ];

  # The state directory must exist and belong to the unprivileged user, so that a fresh named volume
  # mounted there inherits the ownership.
  fakeRootCommands = ''
    mkdir -p .${stateDir}
    chown 65534:65534 .${stateDir}
    chmod 0700 .${stateDir}
  '';

  config = {
    Entrypoint = [ (lib.getExe plex-oidc) ];
    Cmd = [ "serve" ];
    User = "65534:65534";
    WorkingDir = stateDir;
    Env = [
      "PLEX_OIDC_CONFIG=/etc/plex-oidc/config.json"
      "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
    ];
    ExposedPorts = {
      "${toString port}/tcp" = { };
    };
    Volumes = {
      ${stateDir} = { };
    };
    Labels = {
      "org.opencontainers.image.title" = "plex-oidc";
      "org.opencontainers.image.description" = plex-oidc.meta.description;
      "org.opencontainers.image.version" = plex-oidc.version;
      "org.opencontainers.image.licenses" = "MIT OR Apache-2.0";
    };
  };
}
