"""The pytest plugin as a user meets it, through pytester."""

pytest_plugins = ["pytester"]


def test_unknown_provider_is_a_usage_error_with_the_fix(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--chaos-provider=minikube")
    result.stderr.fnmatch_lines(["*--chaos-provider='minikube' is unknown: use one of kind, existing*"])
    assert result.ret == 4


def test_existing_provider_needs_a_context(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--chaos-provider=existing")
    result.stderr.fnmatch_lines(["*--chaos-provider=existing needs --kube-context=NAME*"])


def test_cluster_tests_are_marked_and_can_be_deselected(pytester):
    pytester.makepyfile(
        """
        def test_needs_cluster(cluster):
            pass

        def test_pure():
            pass
        """
    )
    result = pytester.runpytest("-m", "not cluster")
    result.assert_outcomes(passed=1, deselected=1)


def test_options_are_registered(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*chaos and resilience testing*", "*--chaos-provider*", "*--keep-cluster*"])


def test_chaos_repeat_runs_each_experiment_n_times(pytester):
    pytester.makepyfile(
        """
        def test_experiment_like(chaos_repeat_index):
            print("RUN", chaos_repeat_index)

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("--chaos-repeat=3", "-v", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_experiment_like[[]run1of3[]]*", "*test_experiment_like[[]run3of3[]]*"])
    assert pytester.runpytest("--chaos-repeat=0").ret == 4
