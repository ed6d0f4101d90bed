from __future__ import annotations

import pytest

from rktcfg.config.readers import format_of, json_key_lines, parse_bytes, parse_text, toml_key_lines
from rktcfg.errors import ConfigError


def test_format_of() -> None:
    assert format_of("10-site.toml") == "toml"
    assert format_of("a.YAML") == "yaml"
    assert format_of("a.yml") == "yaml"
    assert format_of("rkt.json") == "json"
    assert format_of("README") is None
    assert format_of("a.toml.bak") is None
    assert format_of(".toml") is None


TOML = '''\
# comment
title = "x"          # trailing
"quoted.key" = 1
dotted.inner = 2
multi = """
line [not a table]
key = "not a key"
"""
literal = \'\'\'c:\\path\'\'\'
array = [
  1,  # comment
  2,
]

[table]
a = {x = 1, y = [1, 2]}
b = 'it"s'

[table.sub]
c = true

[[servers]]
name = "one"

[[servers]]
name = "two"
'''


def test_toml_key_lines_handle_strings_arrays_and_tables() -> None:
    lines = toml_key_lines(TOML)
    assert lines[("title",)] == 2
    assert lines[("quoted.key",)] == 3
    assert lines[("dotted",)] == 4
    assert lines[("dotted", "inner")] == 4
    assert lines[("multi",)] == 5
    assert ("key",) not in lines  # inside a multi-line string
    assert lines[("literal",)] == 9
    assert lines[("array",)] == 10
    assert lines[("table",)] == 15
    assert lines[("table", "a")] == 16
    assert lines[("table", "b")] == 17
    assert lines[("table", "sub", "c")] == 20
    assert lines[("servers", 0, "name")] == 23
    assert lines[("servers", 1, "name")] == 26


def test_toml_values_and_line_fallback() -> None:
    parsed = parse_text(TOML, "toml", "f.toml")
    assert parsed.data["table"]["a"] == {"x": 1, "y": [1, 2]}
    assert parsed.line_of(("table", "a", "x")) == 16  # inline table: the enclosing key's line


def test_toml_syntax_error_has_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text('a = 1\nb = "unterminated\n', "toml", "f.toml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("f.toml", 2)
    assert problem.expected.startswith("invalid TOML")


def test_json_key_lines_nested() -> None:
    text = '{\n "a": {\n  "b": [\n   {"c": 1},\n   {"c": 2, "d": "x,y}"}\n  ]\n },\n "e": 3\n}'
    lines = dict(json_key_lines(text))
    assert lines[("a",)] == 2
    assert lines[("a", "b")] == 3
    assert lines[("a", "b", 0, "c")] == 4
    assert lines[("a", "b", 1, "d")] == 5
    assert lines[("e",)] == 8


def test_json_duplicate_key_names_second_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text('{\n"data": "/a",\n"data": "/b"\n}', "json", "f.json")
    assert str(caught.value) == "f.json:3: data: duplicate key"


def test_yaml_lines_and_duplicates() -> None:
    parsed = parse_text("a:\n  b: 1\n  c: [1, 2]\nd: x\n", "yaml", "f.yaml")
    assert parsed.data == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert parsed.lines[("a", "c")] == 3
    assert parsed.lines[("d",)] == 4
    with pytest.raises(ConfigError, match=r"f.yaml:3: a.b: duplicate key"):
        parse_text("a:\n  b: 1\n  b: 2\n", "yaml", "f.yaml")


def test_yaml_refuses_recursion_and_alias_bombs() -> None:
    with pytest.raises(ConfigError, match="recursive alias"):
        parse_text("a: &x [*x]\n", "yaml", "f.yaml")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 7):
        bomb += (
            f"{chr(97 + level)}: &{chr(97 + level)} "
            + "["
            + ", ".join([f"*{chr(96 + level)}"] * 10)
            + "]\n"
        )
    with pytest.raises(ConfigError, match="more than 100000 values"):
        parse_text(bomb, "yaml", "f.yaml")


def test_yaml_rejects_multiple_documents_and_non_mapping() -> None:
    with pytest.raises(ConfigError, match="single YAML document"):
        parse_text("a: 1\n---\nb: 2\n", "yaml", "f.yaml")
    with pytest.raises(ConfigError, match="top level must be a table"):
        parse_text("- 1\n- 2\n", "yaml", "f.yaml")
    with pytest.raises(ConfigError, match="keys must be strings"):
        parse_text("1: a\n", "yaml", "f.yaml")


def test_yaml_unsafe_tags_are_errors() -> None:
    with pytest.raises(ConfigError, match="invalid YAML value"):
        parse_text("a: !!python/object:os.system x\n", "yaml", "f.yaml")


def test_bytes_checks() -> None:
    with pytest.raises(ConfigError, match=r"f.toml:2: not valid UTF-8"):
        parse_bytes(b"a = 1\nb = '\xff'\n", "toml", "f.toml")
    with pytest.raises(ConfigError, match="larger than"):
        parse_bytes(b"#" * (2 << 20), "toml", "f.toml")
    assert parse_bytes("\ufeffa = 1\n".encode(), "toml", "f.toml").data == {"a": 1}


def test_yaml_control_characters_are_errors_with_line() -> None:
    with pytest.raises(ConfigError, match=r"f.yaml:2: invalid YAML: special characters"):
        parse_text("a: 1\nb: \x00\n", "yaml", "f.yaml")
