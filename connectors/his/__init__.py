"""HIS connectors: FHIR R4 (polling and rest-hook) and HL7 v2 over MLLP.

Both turn the hospital's data into the same carepath events. An event's
``source_id`` is the business identity of the fact (``appointment.booked:A1``),
not the transport's message id, so a resend, a repeated HL7 control id, or the
same booking arriving by FHIR and by HL7 is stored once: both connectors of one
hospital share its ``system`` name, which becomes the event ``source``.
"""

from carepath.plugins.hookspecs import hookimpl


@hookimpl
def carepath_connectors():
    from carepath.connectors.his.fhir_source import FhirSource
    from carepath.connectors.his.hl7_source import Hl7Source

    return [FhirSource, Hl7Source]


@hookimpl
def carepath_web_routes():
    from carepath.connectors.his.fhir_hook import fhir_router

    return [fhir_router()]
