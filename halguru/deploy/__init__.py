"""Container images of served agents: `halguru build` and `halguru push` (the Docker Engine API, Docker's or
Podman's). Nothing here imports the docker SDK at module level."""
