#include "crash_offline.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crash_engine.h"
#include "test_util.h"

#define SHOW_FAILURES 5

static uint64_t master_seed(void)
{
	static uint64_t seed;
	if (!seed)
		seed = test_env_seed("HVSTACK_CRASH_SEED");
	return seed;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* The recording must rebuild every tracked file exactly as the operation left it. */
static int recording_matches(const struct crash_journal *j, unsigned file, const char *path)
{
	uint64_t cap = crash_journal_max_size(j, file), size;
	uint8_t *built = malloc(cap + 1), *real = malloc(cap + 1);
	int ret = -1;
	FILE *f = fopen(path, "rb");
	if (built && real && f) {
		struct crash_stats st;
		crash_journal_build(j, file, crash_journal_end(j), 0, CRASH_KEEP_ALL, built, &size,
				    &st);
		size_t n = fread(real, 1, cap + 1, f);
		ret = n == size && memcmp(built, real, size) == 0 ? 0 : -1;
		if (ret)
			fprintf(stderr,
				"crash_offline: the journal does not rebuild %s (%" PRIu64
				" bytes vs %zu on disk): a change escaped the recording\n",
				path, size, n);
	}
	if (f)
		fclose(f);
	free(built);
	free(real);
	return ret;
}

/* Journal indexes of the operations around which cuts matter most. */
static size_t *special_ops(const struct crash_journal *j, size_t *count)
{
	size_t n = crash_journal_count(j), k = 0;
	size_t *out = malloc(sizeof(*out) * (n + 1));
	for (size_t i = 0; out && i < n; i++) {
		const struct crash_op *op = crash_journal_op(j, i);
		if (op->kind == CRASH_SYNC || op->kind == CRASH_TRUNCATE || op->sizes ||
		    !op->via_engine)
			out[k++] = i;
	}
	*count = k;
	return out;
}

static uint64_t pick_cut(const struct crash_journal *j, const size_t *special, size_t nspecial,
			 unsigned index, unsigned cuts, uint64_t *rng)
{
	uint64_t end = crash_journal_end(j);
	if (index == cuts - 1)
		return end;
	if (test_rnd_below(rng, 4) != 0 || nspecial == 0)
		return test_rnd_below(rng, end + 1);
	const struct crash_op *op = crash_journal_op(j, special[test_rnd_below(rng, nspecial)]);
	uint64_t at =
		test_rnd_below(rng, 2) && op->complete != CRASH_NEVER ? op->complete : op->submit;
	at += test_rnd_below(rng, 3);
	return at > end ? end : at;
}

struct cut_dir {
	char dir[512];
	char **paths; /* of the tracked files */
};

static int make_cut_dir(const struct crash_offline *c, const char *scratch, struct cut_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "%s/cut-%s", scratch, c->name);
	mkdir(d->dir, 0700);
	d->paths = calloc(c->npaths, sizeof(char *));
	if (!d->paths)
		return -ENOMEM;
	for (unsigned i = 0; i < c->npaths; i++)
		if (asprintf(&d->paths[i], "%s/%s", d->dir, base_name(c->paths[i])) < 0)
			return -ENOMEM;
	for (unsigned i = 0; i < c->nread_paths; i++) {
		char link_path[1024], target[4096];
		snprintf(link_path, sizeof(link_path), "%s/%s", d->dir,
			 base_name(c->read_paths[i]));
		if (!realpath(c->read_paths[i], target))
			return -errno;
		unlink(link_path);
		if (symlink(target, link_path) != 0)
			return -errno;
	}
	return 0;
}

static void free_cut_dir(const struct crash_offline *c, struct cut_dir *d)
{
	for (unsigned i = 0; d->paths && i < c->npaths; i++) {
		if (d->paths[i])
			unlink(d->paths[i]);
		free(d->paths[i]);
	}
	for (unsigned i = 0; i < c->nread_paths; i++) {
		char link_path[1024];
		snprintf(link_path, sizeof(link_path), "%s/%s", d->dir,
			 base_name(c->read_paths[i]));
		unlink(link_path);
	}
	free(d->paths);
	rmdir(d->dir);
}

/* Builds every tracked file as the cut leaves it. */
static int build_cut(const struct crash_journal *j, const struct cut_dir *d, unsigned npaths,
		     uint64_t cut, uint64_t *rng, enum crash_policy *policy)
{
	uint64_t pick = test_rnd_below(rng, 4);
	*policy = pick == 0 ? CRASH_KEEP_ALL : pick == 1 ? CRASH_DROP_ALL : CRASH_MIXED;
	for (unsigned f = 0; f < npaths; f++) {
		uint64_t size;
		uint8_t *buf = malloc(crash_journal_max_size(j, f) + 1);
		if (!buf)
			return -ENOMEM;
		struct crash_stats st;
		crash_journal_build(j, f, cut, test_rnd_below(rng, UINT64_MAX), *policy, buf, &size,
				    &st);
		int ret = crash_write_file(d->paths[f], buf, size);
		free(buf);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static const char *policy_name(enum crash_policy p)
{
	return p == CRASH_KEEP_ALL ? "keep-all" : p == CRASH_DROP_ALL ? "drop-all" : "mixed";
}

static unsigned check_cuts(const struct crash_offline *c, const struct crash_journal *j,
			   unsigned cuts, const char *scratch)
{
	struct cut_dir d = { 0 };
	if (make_cut_dir(c, scratch, &d) < 0) {
		fprintf(stderr, "%s: cannot prepare %s\n", c->name, d.dir);
		free_cut_dir(c, &d);
		return UINT32_MAX;
	}
	size_t nspecial;
	size_t *special = special_ops(j, &nspecial);
	uint64_t end = crash_journal_end(j);
	unsigned failed = 0;
	for (unsigned i = 0; i < cuts; i++) {
		uint64_t rng = test_mix64(master_seed() ^ test_mix64(i + 1));
		uint64_t cut = pick_cut(j, special, nspecial, i, cuts, &rng);
		enum crash_policy policy;
		char why[1024] = "";
		int ret = build_cut(j, &d, c->npaths, cut, &rng, &policy);
		if (ret == 0)
			ret = c->check(c->opaque, (const char *const *)d.paths, cut, end, why,
				       sizeof(why));
		else
			snprintf(why, sizeof(why), "building the cut: %s", strerror(-ret));
		if (ret == 0)
			continue;
		if (failed++ < SHOW_FAILURES)
			fprintf(stderr,
				"%s: cut %u at sequence %" PRIu64 " of %" PRIu64 " (%s): %s\n"
				"    reproduce: HVSTACK_CRASH_SEED=%#" PRIx64 "\n",
				c->name, i, cut, end, policy_name(policy), why, master_seed());
	}
	free(special);
	free_cut_dir(c, &d);
	return failed;
}

unsigned crash_offline_run(const struct crash_offline *c, unsigned cuts, const char *scratch_dir)
{
	const char *env = getenv("HVSTACK_CRASH_OFFLINE_POINTS");
	if (env && *env)
		cuts = (unsigned)strtoul(env, NULL, 0);
	if (cuts == 0)
		cuts = 1;
	struct crash_journal *j;
	if (crash_journal_create(&j) < 0)
		return UINT32_MAX;
	for (unsigned i = 0; i < c->npaths; i++)
		if (crash_journal_track(j, c->paths[i]) != (int)i) {
			crash_journal_free(j);
			return UINT32_MAX;
		}
	crash_journal_start(j);
	int ret = c->run(c->opaque);
	crash_journal_stop(j);
	unsigned failed = UINT32_MAX;
	if (ret < 0)
		fprintf(stderr, "%s: the operation failed: %s\n", c->name, strerror(-ret));
	else if (crash_journal_untracked(j) || crash_journal_unsupported(j))
		fprintf(stderr,
			"%s: the operation changed untracked files (%u) or used unmodelled "
			"operations (%u)\n",
			c->name, crash_journal_untracked(j), crash_journal_unsupported(j));
	else
		failed = 0;
	for (unsigned i = 0; failed == 0 && i < c->npaths; i++)
		if (recording_matches(j, i, c->paths[i]) < 0)
			failed = UINT32_MAX;
	if (failed == 0) {
		failed = check_cuts(c, j, cuts, scratch_dir);
		printf("%s: %u cut(s) over %" PRIu64 " events, %u failed (seed %#" PRIx64 ")\n",
		       c->name, cuts, crash_journal_end(j), failed, master_seed());
	}
	crash_journal_free(j);
	return failed;
}
