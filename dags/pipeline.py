"""flightdeck_pipeline: a bounded producer batch, then proof that rows landed.

1. ``rows_baseline`` reads the database clock (``SELECT now()``) on ``flight_data``'s
   database, through the read-only Airflow connection ``flightdeck_db`` (env
   ``AIRFLOW_CONN_FLIGHTDECK_DB``, set from the ``flightdeck-reader`` Secret by the
   Airflow chart values in infrastructure/k8s/apps/airflow.yaml).
2. ``produce_batch`` runs our producer image in ``processing`` with the
   KubernetesPodOperator: ``--polls N`` polls OpenSky N times, produces to ``flights``
   and exits 0.
3. ``check_new_rows`` waits (a sensor, up to 10 minutes) until the processor has
   written rows with ``ingested_at`` after the baseline, and fails the run if none came.

The producer image is ``FLIGHTDECK_PRODUCER_IMAGE`` (Airflow chart ``env``), which
``cargo xtask lint`` keeps equal to the tag in infrastructure/k8s/flightdeck/.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import PokeReturnValue, dag, task
from kubernetes.client import models as k8s

#: Airflow connection id of the flightdeck database (read-only role).
FLIGHTDECK_DB_CONN_ID = "flightdeck_db"
#: OpenSky polls per run; the producer waits its poll interval between them.
POLLS = int(os.environ.get("FLIGHTDECK_POLLS", "3"))

NAMESPACE = os.environ.get("FLIGHTDECK_NAMESPACE", "processing")
KAFKA = os.environ.get(
    "FLIGHTDECK_KAFKA_BOOTSTRAP_SERVERS", "flightdeck-kafka-bootstrap.kafka:9092"
)
# NB: no default on purpose: a missing image is a DAG import error shown in the UI,
# not a run that pulls something unexpected.
PRODUCER_IMAGE = os.environ["FLIGHTDECK_PRODUCER_IMAGE"]


def _opensky_env(name: str, key: str) -> k8s.V1EnvVar:
    """An env var from the optional `opensky-credentials` Secret."""
    return k8s.V1EnvVar(
        name=name,
        value_from=k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(
                name="opensky-credentials", key=key, optional=True
            )
        ),
    )


@dag(
    dag_id="flightdeck_pipeline",
    description="Bounded OpenSky batch through Kafka into Postgres, checked at the end",
    schedule=timedelta(hours=1),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["flightdeck"],
)
def flightdeck_pipeline():
    @task
    def rows_baseline() -> str:
        """The database's clock before the batch, as ISO 8601."""
        hook = PostgresHook(postgres_conn_id=FLIGHTDECK_DB_CONN_ID)
        (now,) = hook.get_first("SELECT now()")
        return now.isoformat()

    produce_batch = KubernetesPodOperator(
        task_id="produce_batch",
        name="flightdeck-producer-batch",
        namespace=NAMESPACE,
        image=PRODUCER_IMAGE,
        arguments=["--polls", str(POLLS)],
        env_vars=[
            k8s.V1EnvVar(name="KAFKA_BOOTSTRAP_SERVERS", value=KAFKA),
            _opensky_env("OPENSKY_CLIENT_ID", "client-id"),
            _opensky_env("OPENSKY_CLIENT_SECRET", "client-secret"),
        ],
        # The label puts the pod under the producer's NetworkPolicies in `processing`.
        labels={"app.kubernetes.io/name": "producer", "app.kubernetes.io/part-of": "flightdeck"},
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=65532,
            run_as_group=65532,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "20m", "memory": "32Mi"}, limits={"memory": "128Mi"}
        ),
        automount_service_account_token=False,
        get_logs=True,
        on_finish_action="delete_pod",
        startup_timeout_seconds=300,
        execution_timeout=timedelta(minutes=20),
    )

    @task.sensor(poke_interval=15, timeout=600, mode="reschedule")
    def check_new_rows(baseline: str) -> PokeReturnValue:
        """Done when rows were ingested after the baseline; times out (fails) otherwise."""
        hook = PostgresHook(postgres_conn_id=FLIGHTDECK_DB_CONN_ID)
        (new_rows,) = hook.get_first(
            "SELECT count(*) FROM flight_data WHERE ingested_at > %s::timestamptz",
            parameters=(baseline,),
        )
        return PokeReturnValue(is_done=new_rows > 0, xcom_value=new_rows)

    baseline = rows_baseline()
    baseline >> produce_batch >> check_new_rows(baseline)


flightdeck_pipeline()
