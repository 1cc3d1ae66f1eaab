"""Tools of this agent. Any function decorated with @tool here can be listed in agent.yaml."""

from typing import Literal

from pydantic import BaseModel, Field

from halguru import tool


@tool
def convert_temperature(value: float, unit: Literal["C", "F"]) -> str:
    """Convert a temperature: unit "C" converts Celsius to Fahrenheit, "F" converts Fahrenheit to Celsius."""
    if unit == "C":
        return f"{value:g}°C = {value * 9 / 5 + 32:.1f}°F"
    return f"{value:g}°F = {(value - 32) * 5 / 9:.1f}°C"


class Text(BaseModel):
    text: str = Field(description="the text to count")


@tool
def word_count(args: Text) -> dict[str, int]:
    """Count the words and characters of a text."""
    return {"words": len(args.text.split()), "characters": len(args.text)}
