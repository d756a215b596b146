# NixOS VM test: services.plex-oidc against the fake plex.tv, walking a whole login with curl.
#
#   nix build .#checks.x86_64-linux.vm -L
#
# Needs a machine that can fetch nixpkgs and run KVM; the offline CI only evaluates it.
{
  pkgs,
  module,
  plex-oidc,
  fake-plex,
}:
let
  # The fake grants access to its own fixed server id; read it from the fake's source so they cannot drift.
  fakeSource = builtins.readFile ../../tests/support/fake_plex.rs;
  serverIdLines = builtins.filter (m: m != null) (
    map (builtins.match ''pub const SERVER_ID: &str = "([0-9A-Za-z]+)";.*'') (
      builtins.filter builtins.isString (builtins.split "\n" fakeSource)
    )
  );
  serverId =
    if serverIdLines == [ ] then
      throw "nix/tests/vm.nix: no `pub const SERVER_ID: &str = \"...\";` line in tests/support/fake_plex.rs"
    else
      builtins.head (builtins.head serverIdLines);

  fakePlexUrl = "http://127.0.0.1:9999";
  issuer = "http://localhost:8080";
  redirectUri = "http://localhost:3000/login/generic_oauth";
  # A test fixture; in real deployments this file comes from sops-nix, agenix or similar.
  clientSecret = "vm-test-client-secret-0123456789abcdef";
in
pkgs.testers.runNixOSTest {
  name = "plex-oidc";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];

      services.plex-oidc = {
        enable = true;
        package = plex-oidc;
        settings = {
          inherit issuer;
          plex = {
            server_id = serverId;
            server_name = "VM test server";
            api_url = fakePlexUrl;
            app_url = fakePlexUrl;
          };
          clients = [
            {
              client_id = "grafana";
              name = "Grafana";
              redirect_uris = [ redirectUri ];
            }
          ];
          metrics.listen = "127.0.0.1:9090";
        };
        clientSecretFiles.grafana = "/run/secrets/plex-oidc/grafana";
      };

      # Written at boot by tmpfiles, root-only, so the secret never enters the store.
      systemd.tmpfiles.rules = [
        "d /run/secrets/plex-oidc 0700 root root -"
        "f /run/secrets/plex-oidc/grafana 0600 root root - ${clientSecret}"
      ];

      systemd.services.fake-plex = {
        description = "fake plex.tv";
        wantedBy = [ "multi-user.target" ];
        before = [ "plex-oidc.service" ];
        serviceConfig = {
          ExecStart = "${pkgs.lib.getExe fake-plex} --listen 127.0.0.1:9999";
          DynamicUser = true;
        };
      };

      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
      ];
    };

  testScript = ''
    import base64
    import json
    import re
    import urllib.parse

    BASE = "${issuer}"
    FAKE = "${fakePlexUrl}"
    REDIRECT = "${redirectUri}"
    JAR = "/tmp/cookies"

    def curl(args):
        return machine.succeed(f"curl --silent --show-error --fail -b {JAR} -c {JAR} {args}")

    def post_json(url, body):
        # The bodies hold only URL-safe ids, so single quotes are safe around them.
        return json.loads(curl(f"-H 'Content-Type: application/json' -d '{json.dumps(body)}' '{url}'"))

    def find(pattern, text):
        match = re.search(pattern, text)
        assert match, f"{pattern!r} not in {text!r}"
        return match.group(1)

    def jwt_claims(token):
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    machine.wait_for_unit("fake-plex.service")
    machine.wait_for_unit("plex-oidc.service")
    machine.wait_for_open_port(8080)

    with subtest("health and readiness answer"):
        curl(f"{BASE}/healthz")
        machine.wait_until_succeeds(f"curl --silent --fail {BASE}/readyz")

    with subtest("the service runs hardened, as a dynamic user, with a private state directory"):
        show = machine.succeed("systemctl show plex-oidc.service -p DynamicUser -p ProtectSystem -p NoNewPrivileges")
        assert "DynamicUser=yes" in show, show
        assert "ProtectSystem=strict" in show, show
        assert "NoNewPrivileges=yes" in show, show
        assert machine.succeed("stat -c %a /var/lib/private/plex-oidc").strip() == "700"
        machine.succeed("systemd-analyze security --threshold=20 plex-oidc.service")

    with subtest("the client secret is not in the rendered configuration"):
        config = machine.succeed(
            "systemctl show plex-oidc.service -p ExecStart --value | grep -o '/nix/store/[^ ;]*-plex-oidc-config.json' | head -n 1"
        ).strip()
        rendered = json.loads(machine.succeed(f"cat {config}"))
        assert rendered["clients"][0]["client_secret_file"] == "client-grafana", rendered
        machine.fail(f"grep -q '${clientSecret}' {config}")

    discovery = json.loads(curl(f"{BASE}/.well-known/openid-configuration"))
    assert discovery["issuer"] == BASE, discovery

    with subtest("a Plex owner signs in and the client gets tokens"):
        query = urllib.parse.urlencode({
            "response_type": "code",
            "client_id": "grafana",
            "redirect_uri": REDIRECT,
            "scope": "openid profile email",
            "state": "state-123",
            "nonce": "nonce-456",
        })
        page = curl(f"'{discovery['authorization_endpoint']}?{query}'")
        login = find(r'data-login(?:-id)?="([^"]+)"', page)

        start = post_json(f"{BASE}/login/start", {"login": login})
        fragment = start["popup_url"].split("#?", 1)[1]
        pin_code = urllib.parse.parse_qs(fragment)["code"][0]

        # What the person does in Plex's window.
        machine.succeed(
            f"curl --silent --fail -H 'Content-Type: application/json' "
            f"-d '{{\"code\": \"{pin_code}\", \"account\": \"owner\"}}' {FAKE}/__fake/approve"
        )

        poll = json.loads(machine.wait_until_succeeds(
            f"curl --silent --fail -b {JAR} -H 'Content-Type: application/json' "
            f"-d '{{\"login\": \"{login}\"}}' {BASE}/login/poll | jq -e -c 'select(.state == \"approved\")'"
        ))

        continue_url = urllib.parse.urljoin(BASE + "/", poll["continue_url"])
        headers = curl(f"-o /dev/null -D - '{continue_url}'")
        assert re.match(r"HTTP/[0-9.]+ 303", headers), headers
        location = find(r"(?im)^location: *(\S+)", headers)
        assert location.startswith(REDIRECT + "?"), location
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        assert params["state"] == ["state-123"], params
        assert params["iss"] == [BASE], params

        tokens = json.loads(machine.succeed(
            f"curl --silent --show-error --fail -u grafana:${clientSecret} "
            f"-d grant_type=authorization_code -d code={params['code'][0]} "
            f"--data-urlencode redirect_uri={REDIRECT} {discovery['token_endpoint']}"
        ))
        assert tokens["token_type"] == "Bearer", tokens
        claims = jwt_claims(tokens["id_token"])
        assert claims["iss"] == BASE, claims
        assert claims["aud"] in ("grafana", ["grafana"]), claims
        assert claims["nonce"] == "nonce-456", claims

        userinfo = json.loads(machine.succeed(
            f"curl --silent --fail -H 'Authorization: Bearer {tokens['access_token']}' {discovery['userinfo_endpoint']}"
        ))
        assert userinfo["sub"] == claims["sub"], (userinfo, claims)

    with subtest("the metrics listener counts the calls to Plex"):
        assert "plex_oidc_plex_request_duration_seconds" in curl("http://127.0.0.1:9090/metrics")

    with subtest("the signing key survives a restart"):
        def kids():
            return sorted(k["kid"] for k in json.loads(curl(discovery["jwks_uri"]))["keys"])

        before = kids()
        machine.systemctl("restart plex-oidc.service")
        machine.wait_for_open_port(8080)
        assert kids() == before
  '';
}
