"""The HTTP face: the /graphql endpoint, the Strawberry view and its direct path, health and
metrics routes, and the uvicorn protocol bounding what a request may send."""
