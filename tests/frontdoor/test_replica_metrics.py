"""Replicas' Triton metrics merged for the front door's endpoint: names kept, one HELP/TYPE per family."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from reelserve.frontdoor.replica_metrics import merge

TRITON = """# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="preprocess",version="1"} 7
nv_inference_count{model="ocr",version="1"} 5
# HELP nv_inference_queue_summary_us Summary of queue time per request in microseconds
# TYPE nv_inference_queue_summary_us summary
nv_inference_queue_summary_us_count{model="preprocess",version="1"} 7
nv_inference_queue_summary_us_sum{model="preprocess",version="1"} 1234
nv_inference_queue_summary_us{model="preprocess",version="1",quantile="0.99"} 321
# HELP nv_cpu_memory_total_bytes CPU total memory (RAM), in bytes
# TYPE nv_cpu_memory_total_bytes gauge
nv_cpu_memory_total_bytes 2.5e+10
"""


def test_every_sample_is_labelled_by_its_replica_and_keeps_its_name():
    text = merge([("replica1", TRITON), ("replica2", TRITON.replace(" 7\n", " 9\n"))])
    lines = text.splitlines()
    assert 'nv_inference_count{replica="replica1",model="preprocess",version="1"} 7' in lines
    assert 'nv_inference_count{replica="replica2",model="preprocess",version="1"} 9' in lines
    assert 'nv_cpu_memory_total_bytes{replica="replica2"} 2.5e+10' in lines  # a sample without labels
    assert sum(line.startswith("# TYPE nv_inference_count ") for line in lines) == 1
    assert not any("_total{" in line and "nv_inference_count" in line for line in lines)  # not renamed


def test_the_merge_is_valid_exposition_with_each_family_whole():
    text = merge([("replica1", TRITON), ("replica2", TRITON)])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["nv_inference_queue_summary_us"].type == "summary"
    replicas = {s.labels["replica"] for s in families["nv_inference_queue_summary_us"].samples}
    assert replicas == {"replica1", "replica2"}
    assert len(families["nv_inference_queue_summary_us"].samples) == 6


def test_no_replica_no_samples():
    assert merge([]) == ""
