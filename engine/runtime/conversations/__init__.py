"""Conversations (issue 21): every inbound patient text becomes a stored turn and goes through one intent step.

- :mod:`~carepath.runtime.conversations.turns`: storing turns (text encrypted) and reading a conversation;
- :mod:`~carepath.runtime.conversations.faq`: the per-hospital FAQ files (``faq/*.yaml``) and their matcher;
- :mod:`~carepath.runtime.conversations.classify`: the ``carepath_classify_message`` hook with a timeout,
  falling back to the matcher;
- :mod:`~carepath.runtime.conversations.intents`: the ordered intent-handler registry (``register_intent``);
- :mod:`~carepath.runtime.conversations.routing`: the step itself, and the sweep for turns left pending;
- :mod:`~carepath.runtime.conversations.replies`: answers to the patient (WeChat customer-service messages
  within 48 hours, else the channel's own rules).

docs/conversations.md describes the whole.
"""
