"""The human approval before the contract (destructive) step, with Airflow 3.3's ApprovalOperator.

The task parks in `awaiting_input`; Approve lets cleanup run, Reject skips it and leaves the
expanded schema working (the run stays open as `paused`: trigger the DAG again to be asked
again). A trigger param `approve_contract=true` approves up front, for `airmigrate run --approve`
and for unattended scheduled runs that were reviewed in advance.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator

from airmigrate import operations
from airmigrate.airflow.tasks import keep_lease_while_waiting, pause_run, record_approval
from airmigrate.gates import needs_approval, needs_rollback_approval  # noqa: F401 (re-exported)
from airmigrate.spec import Migration
from airmigrate.state import who


class ContractApproval(ApprovalOperator):
    """ApprovalOperator that can be pre-approved by a run param (`approve_contract`, `approve_rollback`)."""

    def __init__(self, *, approve_param: str = "approve_contract", direction: str = "up", **kwargs):
        super().__init__(**kwargs)
        self.approve_param, self.direction = approve_param, direction

    def execute(self, context):
        if context["params"].get("dry_run"):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("dry_run: nothing to approve, nothing will run")
        if self.direction == "up" and context["params"].get("until") == "expand":
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("until=expand: the contract waits for `airmigrate complete`; nothing to approve")
        if context["params"].get(self.approve_param):
            self.log.info("%s=true in the run's params: approved up front", self.approve_param)
            self._record(context, True, _triggered_by(context), f"approved up front ({self.approve_param}=true)")
            return {"chosen_options": [self.APPROVE], "params_input": {}}
        if getattr(context["dag_run"], "triggering_user_name", None) == "dag_test":
            # dag.test() (airmigrate run, tests) has no UI and never times the question out: it would wait forever
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"this step waits for a human approval, which a local dag.test() run cannot "
                                       f"give: pass {self.approve_param}=true (airmigrate run --approve) or trigger "
                                       "the DAG from the Airflow UI")
        self.log.info("waiting for approval in the Airflow UI (Approve / Reject)")

        keep_lease_while_waiting(context["dag"].dag_id.removesuffix("__rollback"), f"waiting for the "
                                 f"{'contract' if self.direction == 'up' else 'rollback'} approval in the Airflow UI")
        return super().execute(context)

    def execute_complete(self, context, event):
        responder = (event or {}).get("responded_by_user") or {}
        who = (responder.get("name") or responder.get("id")) if isinstance(responder, dict) else str(responder)
        if self.REJECT in ((event or {}).get("chosen_options") or ()):
            pause_run(context["dag"].dag_id.removesuffix("__rollback"), self.direction, who)  # before super()
        elif self.APPROVE in ((event or {}).get("chosen_options") or ()):
            self._record(context, True, who, "approved in the Airflow UI")
        return super().execute_complete(context, event)

    def _record(self, context, approved: bool, who: str | None, detail: str) -> None:
        """Who approved, when and how, in airmigrate.actions (the console and the run's report show it); best
        effort: the answer stands even when it cannot be recorded."""
        try:
            record_approval(context["dag"].dag_id.removesuffix("__rollback"), self.direction, approved, who, detail)
        except Exception:
            self.log.warning("could not record the approval in airmigrate.actions", exc_info=True)


def _triggered_by(context) -> str:
    """The Airflow user who triggered the run; the local user for dag.test() runs (`airmigrate run --approve`)."""
    user = getattr(context["dag_run"], "triggering_user_name", None)
    return user if user and user != "dag_test" else who()


def approval_task(migration: Migration) -> ContractApproval:
    return ContractApproval(
        task_id="approve_contract",
        subject=f"Run the contract step of {migration.id}?",
        body=(f"Validation passed. The contract step of **{migration.id}** is destructive:\n\n```sql\n"
              + "\n".join(operations.for_migration(migration).contract + [migration.cleanup_sql or ""]).strip()
              + "\n```\n\nApprove to run it; Reject to keep the expanded schema (nothing is dropped)."),
        # Airflow 3.3 can mark a just-parked task failed when the answer beats the executor's event
        # (seen under load): a retry parks it again and asks again instead of failing the run.
        retries=2,
        retry_delay=timedelta(seconds=5),
    )


def rollback_approval_task(migration: Migration) -> ContractApproval:
    steps = operations.for_migration(migration)
    return ContractApproval(
        task_id="approve_rollback",
        approve_param="approve_rollback",
        direction="down",
        subject=f"Roll back {migration.id}? It drops what the migration created",
        body=(f"The rollback of **{migration.id}** drops a column or a table:\n\n```sql\n"
              + ";\n".join([migration.down_sql.strip()] + steps.down + steps.down_contract).strip()
              + "\n```\n\nApprove to run it; Reject to leave the schema as it is (nothing is changed)."),
        retries=2,
        retry_delay=timedelta(seconds=5),
    )
