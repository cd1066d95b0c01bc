"""The gateway's services, one package each; none imports another."""
