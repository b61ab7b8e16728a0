"""Only what pyproject.toml cannot say: ship the training recipes (configs/*.yaml) inside the package as
facetrack/recipes/, so that an installed facetrack finds them by name (facetrack train aohr68_default)."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithRecipes(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "facetrack" / "recipes"
        self.mkpath(str(target))
        for recipe in sorted((Path(__file__).resolve().parent / "configs").glob("*.yaml")):
            self.copy_file(str(recipe), str(target / recipe.name))


setup(cmdclass={"build_py": BuildWithRecipes})
