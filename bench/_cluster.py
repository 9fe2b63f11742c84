"""Helpers shared by the bench/ scripts."""


def shut(client):
    "Close a client and its cluster; a slow worker shutdown on a loaded machine must not lose the results."
    try:
        client.close(); client.cluster.close(timeout=60)
    except Exception as e:
        print(f"(cluster shutdown: {type(e).__name__})")
