"""The local update server: manifest fetching (httpx) and checks."""
