def test_the_design_recipe_loads_no_stage_library_until_a_stage_needs_it():
    """An embed-only run must not pay for diffusers, scikit-learn, the OpenAI SDK or matplotlib (diffusers
    alone cost 5 s of such a run's start)."""
    import subprocess
    import sys

    code = (
        "import sys, trendgen.recipes.design\n"
        "print(' '.join(m for m in ('diffusers', 'sklearn', 'openai', 'matplotlib') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
