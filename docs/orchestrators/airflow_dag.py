"""An Airflow 2.x DAG: rebuild a corpus with dsproc nightly, then train on the
committed version. Exit 1 is retried; 2 and 3 fail the task without retries
(AirflowFailException); the version and digest go to XCom for the training task.
(Not run in dsproc's tests: Airflow is too heavy for CI. See prefect_flow.py for
the flow that is.)
"""

from datetime import datetime, timedelta

from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException

from dsproc_task import DsprocFailed, run_dsproc

SPEC = "/etc/dsproc/jobs/corpus.toml"
CLUSTER = "df://10.0.0.10:50050"


@dag(schedule="0 2 * * *", start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 3, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True})
def dsproc_rebuild_then_train():
    @task
    def rebuild() -> dict:
        try:
            return run_dsproc(SPEC, CLUSTER)
        except DsprocFailed as e:
            if not e.retryable:
                raise AirflowFailException(str(e))  # 2 = spec error, 3 = rejected by checks
            raise  # 1: Airflow retries

    @task
    def train(dataset: dict):
        print(f"training on {dataset['output']} version {dataset['version']} ({dataset['dataset_version']})")

    train(rebuild())


dsproc_rebuild_then_train()
