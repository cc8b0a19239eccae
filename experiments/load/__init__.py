"""Load drivers: the asyncio swarm (scales to 10k+ connections) and the Locust user class (realistic think time)."""
