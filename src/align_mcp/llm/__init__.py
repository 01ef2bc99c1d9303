"""Every model call: endpoints, one model client, the judge, structured replies and the bounded runner."""
