#!/usr/bin/env python3
"""Checks a dsproc OpenLineage event against the openlineage-python classes
(generated from the OpenLineage 2-0-2 JSON schema, with its validators: UUID run
ids, ISO date-times with a time, URI producers, the EventType enum, required
fields) by building the RunEvent from the JSON and serialising it back with the
client's Serde: the result must equal the input.

usage: check_openlineage.py EVENT.json
"""
import json
import sys

from openlineage.client.event_v2 import (
    RunState as EventType,
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
)
from openlineage.client.generated import base
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from openlineage.client.serde import Serde


def custom(cls, d):
    """A facet the spec does not define: its class with the extra properties."""
    rest = {k: v for k, v in d.items() if not k.startswith("_")}
    f = cls().with_additional_properties(**rest)
    f._producer, f._schemaURL = d["_producer"], d["_schemaURL"]
    return f


def stamp(f, d):
    f._producer = d["_producer"]
    return f


def dataset_facets(d):
    out = {}
    for name, f in (d or {}).items():
        if name == "schema":
            out[name] = stamp(
                SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=c["name"], type=c["type"]) for c in f["fields"]]), f
            )
        else:
            out[name] = custom(base.DatasetFacet, f)
    return out


def run_facets(d):
    out = {}
    for name, f in (d or {}).items():
        if name == "errorMessage":
            out[name] = stamp(ErrorMessageRunFacet(message=f["message"], programmingLanguage=f["programmingLanguage"]), f)
        else:
            out[name] = custom(base.RunFacet, f)
    return out


def output_facets(d):
    out = {}
    for name, f in (d or {}).items():
        if name == "outputStatistics":
            out[name] = stamp(
                OutputStatisticsOutputDatasetFacet(rowCount=f["rowCount"], size=f.get("size"), fileCount=f.get("fileCount")), f
            )
        else:
            out[name] = custom(base.OutputDatasetFacet, f)
    return out


def main():
    ev = json.load(open(sys.argv[1]))
    built = RunEvent(
        eventType=EventType(ev["eventType"]),
        eventTime=ev["eventTime"],
        producer=ev["producer"],
        run=Run(runId=ev["run"]["runId"], facets=run_facets(ev["run"].get("facets"))),
        job=Job(namespace=ev["job"]["namespace"], name=ev["job"]["name"]),
        inputs=[InputDataset(namespace=i["namespace"], name=i["name"], facets=dataset_facets(i.get("facets"))) for i in ev["inputs"]],
        outputs=[
            OutputDataset(
                namespace=o["namespace"],
                name=o["name"],
                facets=dataset_facets(o.get("facets")),
                outputFacets=output_facets(o.get("outputFacets")),
            )
            for o in ev["outputs"]
        ],
    )
    if built.schemaURL != ev["schemaURL"]:
        print(f"MISMATCH schemaURL: {ev['schemaURL']} != {built.schemaURL}")
        sys.exit(1)
    back = json.loads(Serde.to_json(built))

    def strip(x):
        # Serde drops empty collections and None values
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if v not in (None, {}, [])}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    if strip(back) != strip(ev):
        print("MISMATCH after the round trip:")
        print(json.dumps(strip(ev), sort_keys=True))
        print(json.dumps(strip(back), sort_keys=True))
        sys.exit(1)
    print(f"ok: {ev['eventType']} {ev['run']['runId']} ({len(ev['inputs'])} inputs, {len(ev['outputs'])} outputs)")


if __name__ == "__main__":
    main()
