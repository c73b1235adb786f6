"""Surveys: carepath's own questionnaire pages, wjx and Tencent Wenjuan, all stored the same way.

Every answer becomes a FHIR QuestionnaireResponse linked to the patient and
the touchpoint whose link was opened, and a ``survey.completed`` event with
its scores (NPS and its category, satisfaction, red flags) that journeys
branch on.
"""

from carepath.plugins.hookspecs import hookimpl


@hookimpl
def carepath_connectors():
    from carepath.connectors.surveys.tencent_wenjuan import TencentWenjuan
    from carepath.connectors.surveys.wjx import WjxSurveys

    return [WjxSurveys, TencentWenjuan]


@hookimpl
def carepath_web_routes():
    from carepath.connectors.surveys.pages import survey_router
    from carepath.connectors.surveys.tencent_hook import tencent_router
    from carepath.plugins.web import callback_router

    return [survey_router(), callback_router("wjx"), tencent_router()]
