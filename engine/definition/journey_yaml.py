"""The YAML dialect of journey files: YAML 1.2 core scalars (``on`` stays a key, ``18:00`` a string), limits on
nesting and aliases, and the line of every path for the problems a file has."""

from __future__ import annotations

import re
from typing import Any

import yaml

from carepath.definition.validation import Reporter

_CORE_SCALARS = {
    "tag:yaml.org,2002:bool": (r"^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$", "tTfF"),
    "tag:yaml.org,2002:int": (r"^[-+]?(?:0|[1-9][0-9_]*)$", "-+0123456789"),
    "tag:yaml.org,2002:float": (r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"
                                r"|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
                                "-+.0123456789"),
}
_DROPPED = {*_CORE_SCALARS, "tag:yaml.org,2002:timestamp"}


def _use_core_scalars(cls: type) -> type:
    """Replace YAML 1.1 booleans (on/yes/no), base-60 and octal numbers and timestamps."""
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
    }
    for tag, (pattern, first) in _CORE_SCALARS.items():
        cls.add_implicit_resolver(tag, re.compile(pattern), list(first))
    return cls


#: deepest nesting of lists and mappings a journey file may have (journeys need fewer than ten levels)
MAX_DEPTH = 64


@_use_core_scalars
class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Stops past :data:`MAX_DEPTH` levels with a YAML error at the place (composing is recursive)."""
        if self._depth >= MAX_DEPTH and not self.check_event(yaml.AliasEvent, yaml.ScalarEvent):
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_YAML11 = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"


@_use_core_scalars
class _Dumper(yaml.SafeDumper):
    def represent_list(self, data):  # short lists of scalars read best inline: [wechat, sms]
        flow = all(isinstance(item, (str, int, float, bool)) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    def represent_str(self, data):  # quote what a YAML 1.1 reader would misread (18:00, yes), but not the key on
        ambiguous = data != "on" and _YAML11.resolve(yaml.ScalarNode, data, (True, False)) != _STR
        style = "|" if "\n" in data else "'" if ambiguous else None
        return self.represent_scalar(_STR, data, style=style)


_Dumper.add_representer(list, _Dumper.represent_list)
_Dumper.add_representer(str, _Dumper.represent_str)


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _index_lines(node: yaml.Node, path: str, report: Reporter, lines: dict[str, int],
                 active: frozenset[int] = frozenset()) -> None:
    """Record the 1-based line of every path under ``node``; report duplicate keys."""
    if id(node) in active:  # a recursive alias
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            path_ = _child(path, key_node.value)
            line = key_node.start_mark.line + 1
            if path_ in lines:
                report.add(f"duplicate key '{key_node.value}' (first at line {lines[path_]})", path_, line=line)
            lines[path_] = line
            _index_lines(value_node, path_, report, lines, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[_child(path, i)] = item.start_mark.line + 1
            _index_lines(item, _child(path, i), report, lines, active)


#: values aliases may add to a document (``*name`` repeats its anchor's whole value): more is refused
MAX_ALIAS_EXPANSION = 5000


def _alias_expansion(root: yaml.Node) -> tuple[int, int | None]:
    """How many values following every alias adds to the document, and the line of one repeated anchor.

    Counted in linear time over the node graph (an alias is the same node object
    again), so a "billion laughs" file of nested aliases is measured, not expanded.
    An alias of a value that contains it (recursive) counts once, as indexing does.
    """
    size: dict[int, int] = {}
    busy: set[int] = set()
    shared_line: int | None = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            busy.discard(key)
            size[key] = 1 + sum(size.get(id(c), 1) for c in _children(node))
            continue
        if key in size or key in busy:
            if shared_line is None:
                shared_line = node.start_mark.line + 1
            continue
        busy.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size and id(c) not in busy)
    distinct = len(size)
    return size[id(root)] - distinct, shared_line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _yaml_problem(exc: yaml.YAMLError, report: Reporter) -> None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        report.add(f"invalid YAML: {exc}")
        return
    where = f"column {mark.column + 1}"
    if exc.context and exc.context_mark:
        where += f"; {exc.context} started at line {exc.context_mark.line + 1}"
    report.add(f"invalid YAML: {exc.problem or exc.context} ({where})", line=mark.line + 1)


def _parse_yaml(text: str, report: Reporter, lines: dict[str, int]) -> Any:
    """The document's data, filling ``lines``; None (with a problem) when it is not YAML."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            report.add("the file is empty: a journey needs name, enroll and steps")
            return None
        lines[""] = node.start_mark.line + 1
        extra, line = _alias_expansion(node)
        if extra > MAX_ALIAS_EXPANSION:
            report.add(f"aliases expand to {extra:,} more values, over the limit of {MAX_ALIAS_EXPANSION:,} "
                       "(nested aliases of aliases, a \"billion laughs\" file?): write the repeated parts out "
                       "or alias fewer of them", line=line)
            return None
        _index_lines(node, "", report, lines)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        _yaml_problem(exc, report)
        return None
    except RecursionError:
        report.add("the document is nested too deeply to read (hundreds of levels of lists or mappings)")
        return None
    finally:
        loader.dispose()
