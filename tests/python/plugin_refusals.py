"""What the lakefs:// artifact plugin refuses, and how it says so (run by
tests/tests/python_model.rs):

    python plugin_refusals.py FOLDER_URI

- a URI with a '..' segment is refused before any request (it names no lakeFS object);
- wrong credentials name the URI and the LAKECTL_* variables to check, not the raw
  NotAuthorizedException.

The LAKECTL_* variables come from the environment (the secret is replaced here). Prints one
JSON object with both messages.
"""

import json
import os
import sys

from mlflow.exceptions import MlflowException
from mlflow_lakefs import LakeFSArtifactRepository


def message_of(action) -> str:
    try:
        action()
    except MlflowException as e:
        return e.message
    raise AssertionError("no MlflowException")


def main() -> None:
    folder = sys.argv[1].rstrip("/")
    dots = message_of(lambda: LakeFSArtifactRepository(folder + "/../../data/"))
    below = message_of(lambda: LakeFSArtifactRepository(folder + "/").list_artifacts("../x"))
    os.environ["LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY"] = "not-the-secret"
    denied = message_of(lambda: LakeFSArtifactRepository(folder + "/").list_artifacts())
    print(json.dumps({"dots": dots, "below": below, "denied": denied}))


if __name__ == "__main__":
    main()
