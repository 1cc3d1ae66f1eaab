"""halguru serve: the production mode (REST API, webhooks, worker, auth, admin). Built by the serve issue."""
