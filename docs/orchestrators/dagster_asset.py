"""A Dagster asset: the corpus, rebuilt by dsproc; its metadata carries the
committed version and digest, so downstream training assets pin them. Exit 1
raises RetryRequested (with backoff); 2 and 3 raise Failure (no retry).
(Not run in dsproc's tests: see prefect_flow.py for the flow that is.)
"""

from dagster import AssetExecutionContext, Backoff, Definitions, Failure, MaterializeResult, RetryPolicy, RetryRequested, asset

from dsproc_task import DsprocFailed, run_dsproc

SPEC = "/etc/dsproc/jobs/corpus.toml"


@asset(retry_policy=RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL))
def corpus(context: AssetExecutionContext) -> MaterializeResult:
    try:
        d = run_dsproc(SPEC)
    except DsprocFailed as e:
        if e.retryable:
            raise RetryRequested(max_retries=3, seconds_to_wait=30) from e
        raise Failure(description=str(e), allow_retries=False)
    context.log.info(f"version {d['version']} ({'up to date' if d['up_to_date'] else 'committed'})")
    return MaterializeResult(metadata={"version": d["version"], "dataset_version": d["dataset_version"], "uri": d["output"]})


defs = Definitions(assets=[corpus])
