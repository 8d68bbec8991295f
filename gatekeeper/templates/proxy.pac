// gatekeeper proxy auto-configuration (PAC), generated from the catalog in force
// (policy {{ policy|tojson }}); it follows configuration reloads, so do not copy it.
// Governed (social-media) domains go through the proxy, and so does mitm.it (the proxy's
// own certificate page); every other site DIRECT.
var GATEKEEPER_PROXY = {{ proxy|tojson }};
var GATEKEEPER_DOMAINS = {{ domains|tojson(indent=2) }};

function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (host.charAt(host.length - 1) == ".") {
    host = host.substring(0, host.length - 1);
  }
  for (var i = 0; i < GATEKEEPER_DOMAINS.length; i++) {
    var domain = GATEKEEPER_DOMAINS[i];
    // The domain itself or a subdomain, never a substring: neither "evilfacebook.com"
    // nor "facebook.com.evil.net" is "facebook.com".
    if (host == domain || dnsDomainIs(host, "." + domain)) {
      return GATEKEEPER_PROXY;
    }
  }
  return "DIRECT";
}
