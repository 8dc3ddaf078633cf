"""A recall-quality corpus: 300 distinct facts about 30 fictional projects, and 60 reworded questions.

Every fact names its project and one attribute; every question names the project but asks for the
attribute in different words ("leads the team" -> "who is in charge"), so a hit needs both the name
(where keyword search helps) and the meaning of the attribute (where the embedding helps).
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECTS = [
    "Aldermoor", "Brackenfell", "Cindervale", "Duskhollow", "Emberline", "Frostmere", "Glimmerdeep", "Hollowpine",
    "Ironbough", "Juniperrock", "Kestrelgate", "Lanternfield", "Mossbridge", "Nettlecombe", "Oakenshade",
    "Pebblestrand", "Quillhaven", "Ravenholt", "Saltmarsh", "Thistlewood", "Umberfall", "Violetmoor", "Willowmere",
    "Yarrowdale", "Zephyrcrest", "Ashgrove", "Bramblecourt", "Corvidale", "Driftmoor", "Elmstead",
]  # fmt: skip

LANGUAGES = ["Rust", "Go", "Kotlin", "Elixir", "Haskell", "TypeScript", "Scala", "Ruby", "Java", "Swift", "OCaml"]
PEOPLE = ["Amara Okafor", "Bruno Lindqvist", "Chen Wei", "Dalia Haddad", "Emil Novak", "Fatima Zahra", "Goran Petrov",
          "Hana Sato", "Ivan Morales", "Jonas Becker", "Kira Ivanova", "Luca Romano", "Maya Cohen"]  # fmt: skip
DATABASES = ["PostgreSQL", "MongoDB", "Cassandra", "SQLite", "MySQL", "DynamoDB", "Neo4j", "ClickHouse"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
CHANNELS = ["ops-fire", "pager-storm", "red-alert", "on-call-duty", "incident-room", "sirens", "night-watch"]
REGIONS = ["Frankfurt", "Sydney", "Tokyo", "Oregon", "Dublin", "Singapore", "Toronto", "Mumbai", "Stockholm"]
BUDGETS = ["12,000", "45,000", "80,000", "150,000", "230,000", "9,500", "61,000"]
USERS = ["nurses in rural clinics", "freelance accountants", "long-haul truck drivers", "primary school teachers",
         "dairy farmers", "airline pilots", "public librarians", "wedding photographers"]  # fmt: skip
TEST_TOOLS = ["pytest", "JUnit", "Jest", "RSpec", "ExUnit", "GoogleTest", "Mocha", "ScalaTest", "Hspec"]
YEARS = [str(y) for y in range(2009, 2023)]

# (attribute, fact template, question template, values)
ATTRIBUTES: list[tuple[str, str, str, list[str]]] = [
    ("language", "The {p} codebase is written in {v}.", "Which programming language is {p} built with?", LANGUAGES),
    ("lead", "{v} leads the {p} team.", "Who is in charge of {p}?", PEOPLE),
    ("database", "{p} keeps its records in a {v} database.", "What storage engine backs {p}?", DATABASES),
    ("release", "{p} ships to production every {v}.", "On which weekday does {p} get deployed?", DAYS),
    ("alerts", "Alerts for {p} are posted in the #{v} Slack channel.", "Where do {p} incident notifications show up?",
     CHANNELS),
    ("hosting", "{p} runs on servers in the {v} data centre.", "In which geographic location is {p} hosted?", REGIONS),
    ("budget", "The yearly cloud bill for {p} is about {v} dollars.", "How much does running {p} cost annually?",
     BUDGETS),
    ("users", "{p} is mainly used by {v}.", "Who are the primary customers of {p}?", USERS),
    ("tests", "Unit tests for {p} are written with {v}.", "What testing library does {p} rely on?", TEST_TOOLS),
    ("origin", "{p} was started in {v} as a hackathon prototype.", "When did work on {p} begin?", YEARS),
]  # fmt: skip


@dataclass(frozen=True)
class Fact:
    key: str
    text: str


@dataclass(frozen=True)
class Query:
    text: str
    target: str  # the Fact.key it should find


def facts() -> list[Fact]:
    """300 facts: every attribute of every project, values spread so neighbours differ."""
    out = []
    for i, project in enumerate(PROJECTS):
        for j, (attr, fact, _, values) in enumerate(ATTRIBUTES):
            value = values[(i * 7 + j * 3) % len(values)]
            out.append(Fact(key=f"{project}:{attr}", text=fact.format(p=project, v=value)))
    return out


def queries() -> list[Query]:
    """60 questions: two attributes per project, rotating so each attribute is asked six times."""
    out = []
    for i, project in enumerate(PROJECTS):
        for j in (i % len(ATTRIBUTES), (i + 5) % len(ATTRIBUTES)):
            attr, _, question, _ = ATTRIBUTES[j]
            out.append(Query(text=question.format(p=project), target=f"{project}:{attr}"))
    return out
