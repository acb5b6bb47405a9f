"""NotificationWorkflow: one durable workflow per notification.

Happy path, in Temporal actions: start (search attributes set here, free), the open (classify,
record recipients, fan out the request campaign) as a local activity in the first workflow
task (``_open``: one marker, behind the ``local-open`` patch), one timer (the reminder
deadline), the ``submit_answer`` update, one ``deliver_answer`` activity (persist, localize,
send to the customer, closure notices), one search-attribute upsert with the final status.

Validation happens in the update's validator from workflow state alone, so a bad answer is
refused before anything is written to history and no database query runs for it.
"""

# No `from __future__ import annotations` here: the sandbox executes this module for every
# workflow run, and the SDK then resolves each handler's string annotations anew (a
# compile() per annotation); evaluated annotations cost nothing at that point.

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

with workflow.unsafe.imports_passed_through():
    from notifyflow.workflows.deps import (
        CONFIGURATION_ERROR,
        NOTIFICATION_CONFIG,
        NOTIFICATION_STATUS,
        AnswerAccepted,
        AnswerSubmission,
        AskSatisfactionInput,
        CloseRequest,
        CustomerMessage,
        CustomerMessageAccepted,
        DeliverInput,
        DeliverResult,
        FinishInput,
        FollowUpActivities,
        FollowUpInput,
        FollowUpKind,
        FollowUpResult,
        ForwardInput,
        MalformedNotificationId,
        NotificationActivities,
        NotificationError,
        NotificationOutcome,
        NotificationStatus,
        NotificationWorkflowInput,
        OpenInput,
        OpenResult,
        Priority,
        RecordRejectionInput,
        RefusalCode,
        RejectedAttempt,
        SatisfactionActivities,
        ServiceChange,
        Stage,
        WorkflowStatus,
        business_hours,
        format_notification_id,
        parse_answer,
        parse_notification_id,
        policies,
        validate_answer,
    )


MAX_REJECTED_SHOWN = 50


class _Accepted:
    """An answer taken by the update or signal, waiting for the run loop to deliver it."""

    def __init__(self, submission: AnswerSubmission, answer: dict[str, object]) -> None:
        self.submission = submission
        self.answer = answer


@workflow.defn(name="NotificationWorkflow")
class NotificationWorkflow:
    @workflow.init
    def __init__(self, input: NotificationWorkflowInput) -> None:
        # Handlers may run before run(): everything they read is set here.
        self._input = input
        self._public_id = format_notification_id(input.notification_id)
        self._status = NotificationStatus.requested
        self._stage = Stage.notifying
        self._recipients: list[int] = []
        self._allowed: set[int] | None = None
        self._queue: list[_Accepted] = []
        self._answers_accepted = 0
        self._answered_by: int | None = None
        self._last_accepted: tuple[int, dict[str, object]] | None = None
        self._close: CloseRequest | None = None
        self._rejected: list[RejectedAttempt] = []
        self._to_record: list[RecordRejectionInput] = []
        self._reminders = 0
        self._escalated = False
        self._reason: str | None = None
        self._timing = input.timing
        self._service = input.service
        self._service_changed = False
        # The customer's follow-ups waiting to be forwarded, and how many were taken.
        self._follow_ups: list[ForwardInput] = []
        self._follow_up_count = 0
        # The customer was asked to rate the answer (at most once per notification).
        self._csat_asked = False
        # A close given before the open ended cancelled it (_open_unless_closed).
        self._abandon_open = False
        if input.answered_directly:
            self._allowed = set(input.allowed_answerers)

    # ---- the run loop -------------------------------------------------------------------

    @workflow.run
    async def run(self, input: NotificationWorkflowInput) -> NotificationOutcome:
        self._set_details()
        if (
            self._close is not None
            and not self._queue
            and workflow.patched(policies.PATCH_CLOSE_BEFORE_OPEN)
        ):
            # Closed before anyone was asked (an operator closing a notification whose workflow
            # had not started: signal-with-start): nobody is messaged.
            return await self._end(
                await self._finish(
                    NotificationStatus.closed, self._close.reason, tell_customer=False
                )
            )
        if not input.answered_directly:
            try:
                opened = await self._open_unless_closed()
            except (ActivityError, ApplicationError) as err:
                # A day of failures, or a configuration error: nobody could be asked. An answer
                # an admin gave meanwhile is still delivered; otherwise end in a terminal state
                # with the reason instead of failing the workflow.
                self._allowed = set(input.admin_ids)
                if not self._queue or not workflow.patched(
                    policies.PATCH_DELIVER_AFTER_OPEN_FAILURE
                ):
                    return await self._end(
                        await self._finish(
                            NotificationStatus.closed, _open_failure(err), tell_customer=False
                        )
                    )
            else:
                if opened is None:
                    # Closed while the fan-out was still being tried: nobody more is asked, and
                    # the admins whose request went through are told it is closed.
                    assert self._close is not None
                    return await self._end(
                        await self._finish(
                            NotificationStatus.closed,
                            self._close.reason,
                            tell_customer=False,
                            tell_those_asked=True,
                        )
                    )
                self._recipients = list(opened.recipients)
                self._allowed = set(opened.allowed_answerers)
        self._stage = Stage.waiting
        self._set_details()

        started = workflow.info().start_time
        done: set[str] = set()
        outcome: NotificationOutcome | None = None
        while outcome is None:
            self._service_changed = False
            if self._to_record:
                await self._record_rejections()
                continue
            if self._follow_ups:
                await self._forward(self._follow_ups.pop(0))
                continue
            if self._queue:
                outcome = await self._deliver(self._queue.pop(0))
                continue
            if self._close is not None:
                outcome = await self._finish(
                    NotificationStatus.closed, self._close.reason, tell_customer=False
                )
                continue
            at, name = next((d, n) for d, n in self._deadlines(started) if n not in done)
            remaining = at - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        self._has_work, timeout=remaining, timeout_summary=name
                    )
                    continue
                except TimeoutError:
                    pass
            done.add(name)
            if name == "breach":
                # The first-answer target passed unanswered: escalate now if not done yet.
                if self._answers_accepted == 0 and not self._escalated:
                    await self._follow_up(FollowUpKind.escalation)
            elif name == "escalation" and self._escalated:
                pass  # a breach escalated already
            elif name == "auto-close":
                if self._answers_accepted:
                    # A multi-answer notification that was answered simply ends here.
                    outcome = NotificationOutcome(
                        notification_id=self._public_id, status=self._status
                    )
                else:
                    outcome = await self._finish(
                        NotificationStatus.expired, "no answer in time", tell_customer=True
                    )
            elif self._answers_accepted == 0:
                await self._follow_up(
                    FollowUpKind.reminder if name == "reminder" else FollowUpKind.escalation
                )

        return await self._end(outcome)

    async def _open_unless_closed(self) -> OpenResult | None:
        """The open, given up when an operator closes the notification before it ends and no
        answer waits (the customer withdrew): a fan-out retrying through an outage would hold
        the close for up to a day and then ask the admins anyway. None when given up."""
        opening = asyncio.create_task(self._open())
        try:
            await workflow.wait_condition(
                lambda: opening.done() or (self._close is not None and not self._queue)
            )
        except asyncio.CancelledError:
            # The workflow itself is cancelled (the Temporal UI): the cancellation goes to the
            # open, as when run() awaited it directly.
            opening.cancel()
            return await opening
        if opening.done() or not workflow.patched(policies.PATCH_CLOSE_DURING_OPEN):
            return await opening
        self._abandon_open = True
        opening.cancel()
        try:
            # A send the provider already took stays sent (the ledger has it); the activity
            # hears of the cancellation at its next heartbeat and sends nothing more.
            return await opening
        except (asyncio.CancelledError, CancelledError, ActivityError, ApplicationError):
            # A cancelled local attempt ends in the SDK's CancelledError, the activity in an
            # ActivityError, a Retry-After sleep in asyncio's; the open's own failure meanwhile
            # is as good as the cancellation. A cancellation of the workflow itself goes on.
            if workflow.cancellation_reason() is not None:
                raise
            return None

    async def _open(self) -> OpenResult:
        """Route and notify the recipients. The first attempt runs as a local activity, in the
        workflow task that started the run: one marker instead of an activity's three events
        and a second workflow task (25 → 22 events on the happy path, the patch's marker and
        version attribute included). A retryable failure hands over to the server-side
        activity with the day-long retry policy, so an outage costs no more history than
        before; a failure no retry mends ends the wait at once."""
        arg = OpenInput(notification_id=self._input.notification_id)
        summary = f"{self._public_id}: route and notify recipients"
        if workflow.patched(policies.PATCH_LOCAL_OPEN):
            try:
                return await workflow.execute_local_activity_method(
                    NotificationActivities.open_notification,
                    arg,
                    start_to_close_timeout=policies.LOCAL_OPEN_TIMEOUT,
                    retry_policy=policies.LOCAL_OPEN_RETRY,
                    summary=summary,
                )
            except (ActivityError, ApplicationError) as err:
                if not _retryable(err) or self._abandon_open:
                    raise
                workflow.logger.info(
                    "%s: the local open failed (%s); retrying as an activity",
                    self._public_id,
                    _failure(err) or err,
                )
                delay = _retry_after(err)
                if delay:
                    await workflow.sleep(delay, summary="the provider's Retry-After")
        return await workflow.execute_activity_method(
            NotificationActivities.open_notification,
            arg,
            start_to_close_timeout=policies.OPEN_TIMEOUT,
            heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
            schedule_to_close_timeout=policies.GIVE_UP_AFTER,
            retry_policy=policies.SIDE_EFFECT_RETRY,
            summary=summary,
        )

    async def _end(self, outcome: NotificationOutcome) -> NotificationOutcome:
        self._status = outcome.status
        self._reason = outcome.reason
        self._stage = Stage.done
        self._set_details()
        workflow.upsert_search_attributes([NOTIFICATION_STATUS.value_set(outcome.status.value)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome

    def _deadlines(self, started: datetime) -> list[tuple[datetime, str]]:
        """When to remind, escalate and auto-close (and, with a first-answer target, when the
        target is breached), in the merchant's business time when it has hours."""
        timing, service = self._timing, self._service
        hours = service.business_hours if service else None
        zone = service.timezone if service else "UTC"
        phases = [
            (timing.remind_after, "reminder"),
            (timing.escalate_after, "escalation"),
            (timing.auto_close_after, "auto-close"),
        ]
        if service is not None and service.first_answer_target is not None:
            phases.append((service.first_answer_target, "breach"))
        order = {"reminder": 0, "breach": 1, "escalation": 2, "auto-close": 3}
        out = [(business_hours.deadline(hours, zone, started, after), n) for after, n in phases]
        return sorted(out, key=lambda pair: (pair[0], order[pair[1]]))

    def _has_work(self) -> bool:
        return (
            self._service_changed
            or bool(self._queue)
            or self._close is not None
            or bool(self._to_record)
            or bool(self._follow_ups)
        )

    async def _forward(self, item: ForwardInput) -> None:
        """The customer's follow-up to every recipient (best effort: the notification waits on
        for its answer whatever becomes of it)."""
        try:
            await workflow.execute_activity_method(
                FollowUpActivities.forward_customer_message,
                item.model_copy(update={"recipients": list(self._recipients)}),
                start_to_close_timeout=policies.FOLLOW_UP_TIMEOUT,
                heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=policies.GIVE_UP_AFTER,
                retry_policy=policies.SIDE_EFFECT_RETRY,
                summary=f"{self._public_id}: forward the customer's message {item.seq}",
            )
        except ActivityError as err:
            workflow.logger.warning(
                "%s: follow-up %d gave up: %s", self._public_id, item.seq, err.cause
            )

    async def _deliver(self, item: _Accepted) -> NotificationOutcome | None:
        self._stage = Stage.delivering
        self._set_details()
        cfg = NOTIFICATION_CONFIG[self._input.type]
        answered_at = workflow.now()
        try:
            result: DeliverResult = await workflow.execute_activity_method(
                NotificationActivities.deliver_answer,
                DeliverInput(
                    notification_id=self._input.notification_id,
                    answer=item.answer,
                    answered_by=item.submission.answered_by,
                    answered_at=answered_at,
                    source=item.submission.source,
                    recipients=self._recipients,
                    customer_field=cfg.customer_field,
                    template=item.submission.template,
                ),
                start_to_close_timeout=policies.DELIVER_TIMEOUT,
                heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=policies.GIVE_UP_AFTER,
                retry_policy=policies.SIDE_EFFECT_RETRY,
                summary=f"{self._public_id}: localize and deliver the answer",
            )
        except ActivityError as err:
            # Retries are exhausted (a day of outage, or a non-retryable bug): end in a
            # terminal state with the reason rather than hang.
            return await self._finish(
                NotificationStatus.delivery_failed,
                f"delivery gave up: {err.cause or err}",
                tell_customer=False,
            )
        self._status = result.status
        if result.status is NotificationStatus.delivered:
            await self._ask_satisfaction()
        if self._input.allow_multiple_answers:
            self._stage = Stage.waiting
            self._set_details()
            return None
        return NotificationOutcome(
            notification_id=self._public_id,
            status=result.status,
            delivery_method=result.method,
            reason=result.reason,
            answered_by=item.submission.answered_by,
            customer_text=result.customer_text,
        )

    async def _ask_satisfaction(self) -> None:
        """DESIGN §10: after the first delivery, the customer rates the answer 1–5. Only when
        the merchant has CSAT on (it travels in the input and the service_level signal, so a
        notification without it runs exactly the commands it always did)."""
        if self._csat_asked or self._service is None or not self._service.csat_enabled:
            return
        if not workflow.patched(policies.PATCH_CSAT_ASK):
            return
        self._csat_asked = True
        try:
            await workflow.execute_activity_method(
                SatisfactionActivities.ask_satisfaction,
                AskSatisfactionInput(notification_id=self._input.notification_id),
                start_to_close_timeout=policies.CSAT_ASK_TIMEOUT,
                heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=policies.CSAT_ASK_GIVE_UP_AFTER,
                retry_policy=policies.SIDE_EFFECT_RETRY,
                summary=f"{self._public_id}: ask the customer to rate the answer",
            )
        except ActivityError as err:
            # Best effort: the answer is delivered whatever becomes of the ask.
            workflow.logger.warning("%s: csat ask gave up: %s", self._public_id, err.cause)

    async def _follow_up(self, kind: FollowUpKind) -> None:
        try:
            result = await self._run_follow_up(kind)
        except ActivityError as err:
            # Reminders and escalation are best effort: the notification keeps waiting.
            workflow.logger.warning("%s: %s gave up: %s", self._public_id, kind.value, err.cause)
            return
        self._recipients = list(result.recipients)
        self._allowed = (self._allowed or set()) | set(result.allowed_answerers)
        if kind is FollowUpKind.reminder:
            self._reminders += 1
        else:
            self._escalated = True
        self._set_details()

    async def _run_follow_up(self, kind: FollowUpKind) -> FollowUpResult:
        return await workflow.execute_activity_method(
            NotificationActivities.follow_up,
            FollowUpInput(
                notification_id=self._input.notification_id,
                kind=kind,
                recipients=self._recipients,
            ),
            start_to_close_timeout=policies.FOLLOW_UP_TIMEOUT,
            heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
            schedule_to_close_timeout=policies.GIVE_UP_AFTER,
            retry_policy=policies.SIDE_EFFECT_RETRY,
            summary=f"{self._public_id}: {kind.value}",
        )

    async def _finish(
        self,
        status: NotificationStatus,
        reason: str | None,
        *,
        tell_customer: bool,
        tell_those_asked: bool = False,
    ) -> NotificationOutcome:
        self._stage = Stage.finishing
        self._status = status
        self._set_details()
        await workflow.execute_activity_method(
            NotificationActivities.finish_notification,
            FinishInput(
                notification_id=self._input.notification_id,
                status=status,
                reason=reason,
                recipients=self._recipients,
                tell_customer=tell_customer,
                tell_those_asked=tell_those_asked,
            ),
            start_to_close_timeout=policies.FINISH_TIMEOUT,
            heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
            retry_policy=policies.FINISH_RETRY,
            summary=f"{self._public_id}: {status.value}",
        )
        return NotificationOutcome(notification_id=self._public_id, status=status, reason=reason)

    async def _record_rejections(self) -> None:
        batch, self._to_record = self._to_record, []
        for item in batch:
            await workflow.execute_local_activity_method(
                NotificationActivities.record_rejection,
                item,
                start_to_close_timeout=policies.RECORD_TIMEOUT,
                retry_policy=policies.LOCAL_RETRY,
                summary="record a refused answer",
            )

    def _set_details(self) -> None:
        workflow.set_current_details(
            f"**{self._public_id}** · {self._input.type.value}\n\n"
            f"stage: {self._stage.value} · status: {self._status.value} · "
            f"recipients: {len(self._recipients)} · reminders: {self._reminders}"
            + (" · escalated" if self._escalated else "")
            + (" · customer asked to rate the answer" if self._csat_asked else "")
            # Why it ended (a configuration error, an operator's reason), for the UI's reader.
            + (f"\n\nreason: {self._reason}" if self._reason else "")
        )

    # ---- answers ------------------------------------------------------------------------

    def _check_addressed(self, notification_id: str) -> None:
        """The payload names this notification (well-formed, and not another one)."""
        try:
            n = parse_notification_id(notification_id)
        except MalformedNotificationId as exc:
            raise NotificationError(RefusalCode.malformed_id, str(exc)) from None
        if n != self._input.notification_id:
            raise NotificationError(
                RefusalCode.wrong_notification,
                f"this is {self._public_id}, not {format_notification_id(n)}",
            )

    def _check_open(self) -> None:
        if self._close is not None or self._status in (
            NotificationStatus.closed,
            NotificationStatus.expired,
        ):
            raise NotificationError(RefusalCode.closed, f"{self._public_id} is closed")

    def _check(self, sub: AnswerSubmission) -> dict[str, object]:
        """Every refusal of DESIGN §2/§4, decided from workflow state; raises NotificationError."""
        self._check_addressed(sub.notification_id)
        # Who first: a stranger learns nothing about the notification's state or schema.
        if (
            self._allowed is not None
            and sub.answered_by not in self._allowed
            and sub.answered_by not in self._input.admin_ids
        ):
            raise NotificationError(
                RefusalCode.not_allowed,
                f"merchant user {sub.answered_by} may not answer {self._public_id}",
            )
        self._check_open()
        if not self._input.allow_multiple_answers and (self._queue or self._answers_accepted):
            if self._is_last_accepted(sub):
                # The same person sending the same answer again (a client retrying after a
                # timeout): it is the answer already taken, not a second one.
                raise _SameAnswer()
            raise NotificationError(
                RefusalCode.already_answered, f"{self._public_id} has already been answered"
            )
        return self._validated(sub)

    def _validated(self, sub: AnswerSubmission) -> dict[str, object]:
        return validate_answer(
            parse_answer(sub.answer_json),
            self._input.answer_schema,
            tuple(self._input.answered_fields),
        )

    def _is_last_accepted(self, sub: AnswerSubmission) -> bool:
        if self._last_accepted is None or self._last_accepted[0] != sub.answered_by:
            return False
        try:
            return self._validated(sub) == self._last_accepted[1]
        except NotificationError:
            return False

    def _accept(self, sub: AnswerSubmission, answer: dict[str, object]) -> None:
        self._last_accepted = (sub.answered_by, answer)
        self._queue.append(_Accepted(sub, answer))
        self._answers_accepted += 1
        self._answered_by = sub.answered_by
        self._status = NotificationStatus.answered

    def _refuse(self, sub: AnswerSubmission, err: NotificationError) -> None:
        attempt = RejectedAttempt(
            answered_by=sub.answered_by,
            source=sub.source,
            code=err.code.value,
            message=err.message,
            at=workflow.now(),
        )
        # The query shows the latest refusals; all of them are kept in the database.
        self._rejected = [*self._rejected[-(MAX_REJECTED_SHOWN - 1) :], attempt]
        self._to_record.append(
            RecordRejectionInput(
                notification_id=self._input.notification_id,
                attempt=attempt,
                answer_json=sub.answer_json,
            )
        )

    @workflow.update(name="submit_answer")
    async def submit_answer(self, sub: AnswerSubmission) -> AnswerAccepted:
        if self._allowed is None and sub.answered_by not in self._input.admin_ids:
            # Answered by a non-admin before the recipients are known: wait for the routing,
            # but not without bound (the fan-out may be retrying); the caller may try again.
            if workflow.patched(policies.PATCH_BOUNDED_ANSWER_WAIT):
                try:
                    await workflow.wait_condition(
                        lambda: self._allowed is not None,
                        timeout=policies.ANSWER_WAIT_FOR_ROUTING,
                        timeout_summary="recipients not known yet",
                    )
                except TimeoutError:
                    raise _to_application_error(
                        NotificationError(
                            RefusalCode.not_ready,
                            f"{self._public_id} is still being routed to its recipients; "
                            "try again in a few seconds",
                        )
                    ) from None
            else:
                await workflow.wait_condition(lambda: self._allowed is not None)
        # Checked again: several updates can pass their validators in one workflow task
        # before any handler runs, and only the first of them may be accepted.
        try:
            answer = self._check(sub)
        except _SameAnswer:
            return AnswerAccepted(notification_id=self._public_id, status=self._status)
        except NotificationError as err:
            raise _to_application_error(err) from None
        self._accept(sub, answer)
        return AnswerAccepted(notification_id=self._public_id, status=self._status)

    @submit_answer.validator
    def _validate_submit_answer(self, sub: AnswerSubmission) -> None:
        try:
            self._check(sub)
        except _SameAnswer:
            return
        except NotificationError as err:
            raise _to_application_error(err) from None

    @workflow.signal(name="answer")
    def answer(self, sub: AnswerSubmission) -> None:
        """The same payload as the update, for operators in the Temporal UI."""
        try:
            answer = self._check(sub)
        except _SameAnswer:
            if workflow.patched(policies.PATCH_SAME_ANSWER_SIGNAL):
                return
            # Recorded before this change: the same answer again was refused.
            self._refuse(
                sub,
                NotificationError(
                    RefusalCode.already_answered, f"{self._public_id} has already been answered"
                ),
            )
            return
        except NotificationError as err:
            workflow.logger.info("refused answer to %s: %s", self._public_id, err.message)
            self._refuse(sub, err)
            return
        self._accept(sub, answer)

    def _check_follow_up(self, message: CustomerMessage) -> None:
        self._check_addressed(message.notification_id)
        self._check_open()
        if self._queue or self._answers_accepted or self._status.is_terminal:
            raise NotificationError(
                RefusalCode.already_answered,
                f"{self._public_id} has already been answered: start a new notification",
            )

    @workflow.update(name="add_customer_message")
    def add_customer_message(self, message: CustomerMessage) -> CustomerMessageAccepted:
        """The customer wrote again about this notification: forwarded to its recipients."""
        try:
            self._check_follow_up(message)
        except NotificationError as err:
            raise _to_application_error(err) from None
        self._follow_up_count += 1
        self._follow_ups.append(
            ForwardInput(
                notification_id=self._input.notification_id,
                seq=self._follow_up_count,
                text=message.text,
                at=workflow.now(),
                recipients=[],
            )
        )
        return CustomerMessageAccepted(notification_id=self._public_id, seq=self._follow_up_count)

    @add_customer_message.validator
    def _validate_customer_message(self, message: CustomerMessage) -> None:
        try:
            self._check_follow_up(message)
        except NotificationError as err:
            raise _to_application_error(err) from None

    @workflow.signal(name="service_level")
    def service_level(self, change: ServiceChange) -> None:
        """The merchant changed its settings: the waiting notification's timers follow."""
        timing = (
            change.timing.halved() if self._input.priority is Priority.urgent else change.timing
        )
        service = change.service
        if (
            self._input.priority is Priority.urgent
            and service is not None
            and service.first_answer_target is not None
        ):
            service = service.model_copy(
                update={"first_answer_target": service.first_answer_target / 2}
            )
        self._timing = timing
        self._service = service
        self._service_changed = True

    @workflow.signal(name="close")
    def close(self, request: CloseRequest) -> None:
        if self._answers_accepted or self._status.is_terminal or self._close is not None:
            workflow.logger.info("close of %s ignored: status %s", self._public_id, self._status)
            return
        self._close = request

    @workflow.query(name="status")
    def status(self) -> WorkflowStatus:
        return WorkflowStatus(
            notification_id=self._public_id,
            status=self._status,
            stage=self._stage,
            recipients=self._recipients,
            answered_by=self._answered_by,
            reminders_sent=self._reminders,
            escalated=self._escalated,
            rejected=self._rejected,
        )


class _SameAnswer(Exception):
    """The answer already accepted, submitted again by the same person."""


def _failure(err: ActivityError | ApplicationError) -> BaseException | None:
    """What failed the step: an activity's failure comes wrapped in an ActivityError, a local
    activity's as the ApplicationError its attempt raised (a timeout still as ActivityError)."""
    return err.cause if isinstance(err, ActivityError) else err


def _retryable(err: ActivityError | ApplicationError) -> bool:
    """Whether the server-side activity may try again what the local attempt could not."""
    if isinstance(err, ActivityError) and err.retry_state is RetryState.NON_RETRYABLE_FAILURE:
        return False
    cause = _failure(err)
    return not (
        isinstance(cause, ApplicationError)
        and (cause.non_retryable or cause.type == policies.NON_RETRYABLE)
    )


def _retry_after(err: ActivityError | ApplicationError) -> timedelta | None:
    """The provider's Retry-After carried by the failure (a 429), honoured before the handover."""
    cause = _failure(err)
    return cause.next_retry_delay if isinstance(cause, ApplicationError) else None


def _open_failure(err: ActivityError | ApplicationError) -> str:
    cause = _failure(err)
    if isinstance(cause, ApplicationError) and cause.type == CONFIGURATION_ERROR:
        return cause.message
    return f"the merchant's team could not be notified: {cause or err}"


def _to_application_error(err: NotificationError) -> ApplicationError:
    return ApplicationError(
        err.message,
        {"code": err.code.value, "details": err.details},
        type=err.code.value,
        non_retryable=True,
    )


def initial_search_attributes(input: NotificationWorkflowInput) -> TypedSearchAttributes:
    """Set at start (free of charge); only the status changes later."""
    from notifyflow.search_attributes import (
        MERCHANT_ID,
        NOTIFICATION_ID,
        NOTIFICATION_PRIORITY,
        NOTIFICATION_TYPE,
    )

    return TypedSearchAttributes(
        [
            SearchAttributePair(NOTIFICATION_ID, input.notification_id),
            SearchAttributePair(NOTIFICATION_TYPE, input.type.value),
            SearchAttributePair(NOTIFICATION_STATUS, NotificationStatus.requested.value),
            SearchAttributePair(MERCHANT_ID, input.merchant_id),
            SearchAttributePair(NOTIFICATION_PRIORITY, input.priority.value),
        ]
    )
