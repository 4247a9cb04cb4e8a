"""The benchmark image: Cloud Build config, build context, submit and follow, registry look-ups, version map."""

from recipelib.image.build import BuildOutcome, BuildPlan, build_image, follow_build, plan_image_build

__all__ = ["BuildOutcome", "BuildPlan", "build_image", "follow_build", "plan_image_build"]
