"""A Prefect 3 flow: rebuild a corpus with dsproc, then hand the exact version to
training. Exit 1 is retried (with backoff); 2 and 3 fail at once.

    python prefect_flow.py JOB.toml [df://scheduler:50050]
"""

import os
import sys

from prefect import flow, task

from dsproc_task import DsprocFailed, run_dsproc


def retry_only_exit_1(task, task_run, state):
    try:
        state.result()
    except DsprocFailed as e:
        return e.retryable
    except Exception:
        return False
    return False


# DSPROC_RETRY_DELAY (seconds) shortens the backoff, for tests.
DELAYS = [int(os.environ["DSPROC_RETRY_DELAY"])] * 3 if "DSPROC_RETRY_DELAY" in os.environ else [10, 60, 300]


@task(retries=3, retry_delay_seconds=DELAYS, retry_condition_fn=retry_only_exit_1)
def rebuild(spec: str, cluster: str | None = None) -> dict:
    return run_dsproc(spec, cluster)


@task
def train(dataset: dict) -> str:
    # A real flow starts the training job here, pinned to this version.
    return f"training on {dataset['output']} version {dataset['version']} ({dataset['dataset_version'][:12]})"


@flow(name="dsproc-rebuild-then-train")
def rebuild_then_train(spec: str, cluster: str | None = None) -> dict:
    dataset = rebuild(spec, cluster)
    print(train(dataset))
    return dataset


if __name__ == "__main__":
    result = rebuild_then_train(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    import json

    print("DATASET " + json.dumps(result))
