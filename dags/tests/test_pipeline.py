"""Imports dags/ with Airflow and the cncf-kubernetes provider, as the scheduler would.

Run by `cargo xtask lint` in a pinned virtualenv (see xtask/src/lint/dags.rs);
by hand: `python -m unittest discover -s dags/tests -t .` with that venv's python.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import unittest

DAGS = pathlib.Path(__file__).resolve().parents[1]
IMAGE = "flightdeck/producer:0.1.0-0123456789ab"

# Airflow reads its configuration at import: point it at a throwaway home first.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="flightdeck-airflow-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ.setdefault("FLIGHTDECK_PRODUCER_IMAGE", IMAGE)

from airflow.models.dagbag import DagBag  # noqa: E402


class PipelineDagTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.dagbag = DagBag(dag_folder=str(DAGS), include_examples=False)

    def test_dags_import_without_errors(self) -> None:
        self.assertEqual(self.dagbag.import_errors, {})

    def test_pipeline_runs_baseline_then_producer_then_check(self) -> None:
        dag = self.dagbag.dags["flightdeck_pipeline"]
        edges = {
            (task.task_id, downstream)
            for task in dag.tasks
            for downstream in sorted(task.downstream_task_ids)
        }
        self.assertEqual(
            edges,
            {
                ("rows_baseline", "produce_batch"),
                ("rows_baseline", "check_new_rows"),
                ("produce_batch", "check_new_rows"),
            },
        )

    def test_producer_batch_is_bounded_and_uses_the_pinned_image(self) -> None:
        produce = self.dagbag.dags["flightdeck_pipeline"].get_task("produce_batch")
        self.assertEqual(type(produce).__name__, "KubernetesPodOperator")
        self.assertEqual(produce.image, os.environ["FLIGHTDECK_PRODUCER_IMAGE"])
        self.assertEqual(produce.arguments[0], "--polls")
        self.assertGreater(int(produce.arguments[1]), 0)
        self.assertEqual(produce.namespace, "processing")

    def test_check_task_is_a_sensor_on_the_flightdeck_connection(self) -> None:
        check = self.dagbag.dags["flightdeck_pipeline"].get_task("check_new_rows")
        self.assertEqual(check.mode, "reschedule")
        self.assertEqual(check.timeout, 600)


if __name__ == "__main__":
    unittest.main()
