# services.plex-oidc.settings as the module system hands it to nix/service.nix: declared options
# that were left unset arrive as null.
{
  issuer = "https://auth.example.com";
  listen = "127.0.0.1:8080";
  state_dir = "/var/lib/plex-oidc";
  plex = {
    server_id = "0123456789abcdef0123456789abcdef01234567";
    server_name = null;
  };
  clients = [
    {
      client_id = "grafana";
      name = "Grafana";
      redirect_uris = [ "https://grafana.example.com/login/generic_oauth" ];
    }
    {
      client_id = "immich-mobile";
      name = null;
      public = true;
      redirect_uris = [ "app.immich:///oauth-callback" ];
    }
  ];
  log = {
    level = null;
    format = "json";
  };
  metrics = {
    listen = null;
  };
}
