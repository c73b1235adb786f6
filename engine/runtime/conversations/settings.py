"""``[conversations]`` and ``[complaints]`` in carepath.toml: how inbound messages are routed and complaints run.

::

    [conversations]
    faq_paths = ["faq"]                     # FAQ files (faq/*.yaml), relative to carepath.toml
    red_flag_words = ["胸痛", "呼吸困难", "大出血", "渗血", "re:伤口.{0,6}(出血|流血)"]
    emergency_advice = "……如出现胸痛、呼吸困难、大量出血，请立即拨打120或到最近的急诊就诊。"
    ignorable_words = ["好的", "谢谢", "收到"]  # whole messages that need nothing (defaults: 好的, 谢谢, 收到, 嗯 ...)
    care_team = "nursing"                   # who gets red-flag tasks (an urgent task with red_flag_sla)
    red_flag_sla = "30m"
    manager_team = "health_management"      # the team of health-manager tasks (unrecognised messages)
    manager_sla = "1d"
    default_manager = "wang-li"             # health manager of a patient nobody was assigned to (optional)
    classifier_timeout = 2.0                # seconds a carepath_classify_message plugin may take
    customer_service_window = "48h"         # WeChat customer-service messages only this long after the patient wrote
    answer_template = "conversation_answer" # the template an answer goes as where free text cannot

    [complaints]
    team = "patient_service"                # its escalation chain is what a breach climbs
    first_response = "24h"
    resolution_workdays = 7
    from_detractors = true                  # a detractor survey answer (NPS 0-6) opens a case (default false)
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carepath.definition.durations import Duration

DEFAULT_RED_FLAGS = ("胸痛", "胸口痛", "呼吸困难", "喘不上气", "大出血", "出血不止", "渗血", "昏迷", "意识不清",
                     "抽搐", "re:伤口.{0,6}(出血|流血|流脓)")
#: whole messages that need no answer and no person, whatever the FAQ says (the FAQ can add its own)
DEFAULT_IGNORABLE = ("好", "好的", "好滴", "嗯", "嗯嗯", "哦", "谢谢", "谢谢你", "谢谢医生", "谢谢护士", "多谢", "收到",
                     "知道了", "明白", "明白了", "ok", "okay", "👍", "🙏")
DEFAULT_EMERGENCY_ADVICE = ("您描述的情况需要尽快处理，我们已通知护士，会尽快联系您。如出现胸痛、呼吸困难、大量出血或意识不清，"
                            "请立即拨打120或到最近的急诊就诊。")


class ConversationSettings(BaseModel):
    """``[conversations]``: the intent step's rules (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    faq_paths: list[str] = Field(default_factory=lambda: ["faq"],
                                 description="FAQ YAML files or folders, relative to carepath.toml")
    red_flag_words: list[str] = Field(default_factory=lambda: list(DEFAULT_RED_FLAGS), min_length=1,
                                      description="words (or re:patterns) that open an urgent task for the care team")
    emergency_advice: str = Field(DEFAULT_EMERGENCY_ADVICE, min_length=1,
                                  description="the holding reply sent at once with a red-flag message")
    ignorable_words: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORABLE),
                                       description="whole messages recorded as ignorable by this rule")
    care_team: str = "nursing"
    red_flag_sla: Duration = timedelta(minutes=30)
    manager_team: str = "health_management"
    manager_sla: Duration = timedelta(days=1)
    default_manager: str | None = None
    classifier_timeout: float = Field(2.0, gt=0, le=30)
    customer_service_window: Duration = timedelta(hours=48)
    answer_template: str = "conversation_answer"

    @field_validator("red_flag_words")
    @classmethod
    def _patterns(cls, words: list[str]) -> list[str]:
        import re

        for word in words:
            if not word.strip():
                raise ValueError("a red-flag word is never blank")
            if word.startswith("re:"):
                try:
                    re.compile(word[3:])
                except re.error as exc:
                    raise ValueError(f"red-flag pattern {word!r} is not a valid regular expression: {exc}") from None
        return words


class ComplaintSettings(BaseModel):
    """``[complaints]``: deadlines, who works complaints, and what the patient is told."""

    model_config = ConfigDict(extra="forbid")

    team: str = "patient_service"
    first_response: Duration = timedelta(hours=24)
    resolution_workdays: int = Field(7, ge=1, le=60)
    #: off by default: a journey asks for cases on its own survey steps (``detractor: complaint_case``, as the
    #: stock outpatient-visit journey does); on, every survey's detractor answer opens one
    from_detractors: bool = False
    acknowledged_message: str = "您的意见我们已收到，工作人员正在处理，会在7个工作日内给您答复。"
    resolved_message: str = "您反映的问题已处理完毕：{{ resolution }}。感谢您的反馈。"
    satisfaction_question: str = "请问您对这次处理结果满意吗？请回复 1-5（5 为非常满意）。"
