"""Every model call: endpoints, the judge protocol, structured replies and the bounded runner."""
