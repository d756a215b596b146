// The Plex popup lands here after approval. The first window polls the server and moves on by
// itself; the broadcast only spares it the wait for its next poll (a COOP-severed opener cannot
// be reached any other way). Then the window closes itself where the browser allows it (a
// script-opened window); elsewhere the text asks the person to close it.
'use strict';
try {
  new BroadcastChannel('plex-oidc-login').postMessage('plex-approved');
} catch {
  // No BroadcastChannel: the first window's polling still gets there.
}
setTimeout(() => window.close(), 50);
