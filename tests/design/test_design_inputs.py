def test_the_design_recipe_loads_no_stage_library_until_a_stage_needs_it():
    """An embed-only run must not pay for diffusers, scikit-learn, the OpenAI SDK, matplotlib, the trend
    timelines' statistics (scipy.stats: 0.7 s) or the model classes of a family it does not load (diffusers
    alone cost 5 s of such a run's start)."""
    import subprocess
    import sys

    code = (
        "import sys, trendgen.recipes.design\n"
        "libraries = ('diffusers', 'sklearn', 'openai', 'matplotlib', 'scipy.stats', "
        "'transformers.models.siglip.modeling_siglip', 'transformers.models.clip.modeling_clip')\n"
        "print(' '.join(m for m in libraries if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
