package schema

import "net/url"

// fleetlockURLProblem says what is wrong with u as a FleetLock server's base URL (http
// or https, with a host), "" when nothing.
func fleetlockURLProblem(u string) string {
	parsed, err := url.Parse(u)
	switch {
	case err != nil:
		return "not a URL"
	case parsed.Scheme != "http" && parsed.Scheme != "https":
		if parsed.Scheme == "" {
			return "no scheme"
		}
		return "unsupported scheme " + parsed.Scheme
	case parsed.Host == "":
		return "no host"
	}
	return ""
}
