/*
 * migrate: Flyway file names (what is a migration, what is ignored, what is
 * refused), version order part by part, Flyway's line-based checksum, and
 * the no-transaction marker.
 */
#include "migrate.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void test_file_names(void)
{
	static const struct {
		const char *name;
		MigrateNameResult want;
		const char *version, *description;
	} cases[] = {
	        {"V1__create_orders.sql", MIGRATE_NAME_OK, "1", "create orders"},
	        {"V1.2__add_note.sql", MIGRATE_NAME_OK, "1.2", "add note"},
	        {"V1_2__add_note.sql", MIGRATE_NAME_OK, "1.2", "add note"},
	        {"V001.010__x.sql", MIGRATE_NAME_OK, "1.10", "x"},
	        {"V2020.01.31.1__big.sql", MIGRATE_NAME_OK, "2020.1.31.1", "big"},
	        {"V3__a__b.sql", MIGRATE_NAME_OK, "3", "a  b"},
	        {"R__views.sql", MIGRATE_NAME_IGNORED, NULL, NULL},
	        {"U1__undo.sql", MIGRATE_NAME_IGNORED, NULL, NULL},
	        {"V1__x.sql.conf", MIGRATE_NAME_IGNORED, NULL, NULL},
	        {"README.md", MIGRATE_NAME_IGNORED, NULL, NULL},
	        {"v1__lower.sql", MIGRATE_NAME_IGNORED, NULL, NULL},
	        {"V1_x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1.__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1..2__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1a__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1__.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1234567890123456789__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	        {"V1.2.3.4.5.6.7.8.9__x.sql", MIGRATE_NAME_BAD, NULL, NULL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		MigrateFile f;
		MigrateNameResult r = migrate_parse_name(cases[i].name, &f);
		CHECK_MSG(r == cases[i].want, "%s: result %d, want %d", cases[i].name, (int)r,
		          (int)cases[i].want);
		if (r == MIGRATE_NAME_OK && cases[i].want == MIGRATE_NAME_OK) {
			CHECK_STREQ(f.version, cases[i].version);
			CHECK_STREQ(f.description, cases[i].description);
			CHECK_STREQ(f.name, cases[i].name);
		}
		migrate_file_free(&f);
	}
}

static void test_versions_compare_numerically_part_by_part(void)
{
	/* each row in ascending order; equal neighbours marked */
	static const struct {
		const char *a, *b;
		int want;
	} cases[] = {
	        {"V1__x.sql", "V2__x.sql", -1},      {"V2__x.sql", "V10__x.sql", -1},
	        {"V1.9__x.sql", "V1.10__x.sql", -1}, {"V1__x.sql", "V1.1__x.sql", -1},
	        {"V1__x.sql", "V1.0__x.sql", 0},     {"V1.2__x.sql", "V1_2__y.sql", 0},
	        {"V01__x.sql", "V1__x.sql", 0},      {"V2__x.sql", "V1.99__x.sql", 1},
	        {"V1.0.1__x.sql", "V1__x.sql", 1},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		MigrateFile a, b;
		CHECK(migrate_parse_name(cases[i].a, &a) == MIGRATE_NAME_OK);
		CHECK(migrate_parse_name(cases[i].b, &b) == MIGRATE_NAME_OK);
		CHECK_MSG(migrate_version_cmp(&a, &b) == cases[i].want, "%s vs %s", cases[i].a,
		          cases[i].b);
		CHECK_MSG(migrate_version_cmp(&b, &a) == -cases[i].want, "%s vs %s", cases[i].b,
		          cases[i].a);
		migrate_file_free(&a);
		migrate_file_free(&b);
	}
}

static void test_checksums_are_flyways(void)
{
	/*
	 * Flyway: CRC-32 updated with each line's bytes, line ends and a leading
	 * BOM left out, stored as a signed int. "123456789" is CRC-32's check
	 * value (0xCBF43926).
	 */
	static const struct {
		const char *text;
		int32_t want;
	} cases[] = {
	        {"", 0},
	        {"123456789", (int32_t)0xCBF43926u},
	        {"1234\n56789", (int32_t)0xCBF43926u},
	        {"1234\r\n56789\n", (int32_t)0xCBF43926u},
	        {"1234\r56789\r\n", (int32_t)0xCBF43926u},
	        {"\xEF\xBB\xBF"
	         "123456789",
	         (int32_t)0xCBF43926u},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(migrate_checksum(cases[i].text, strlen(cases[i].text)) == cases[i].want,
		          "case %zu: %d", i,
		          migrate_checksum(cases[i].text, strlen(cases[i].text)));
	/* a changed character and a changed line break both count */
	const char *a = "create table t (id int);\n", *b = "create table t (id bigint);\n";
	CHECK(migrate_checksum(a, strlen(a)) != migrate_checksum(b, strlen(b)));
	const char *c = "select 1;\nselect 2;\n", *d = "select 1; select 2;\n";
	CHECK(migrate_checksum(c, strlen(c)) != migrate_checksum(d, strlen(d)));
}

static void test_no_transaction_marker(void)
{
	static const struct {
		const char *text;
		bool want;
	} cases[] = {
	        {"-- pgtenant: no-transaction\ncreate index concurrently i on t (a);", true},
	        {"-- pgtenant: no-transaction  \r\nvacuum t;", true},
	        {"-- pgtenant: no-transaction", true},
	        {"create index i on t (a);\n-- pgtenant: no-transaction\n", false},
	        {"-- pgtenant: no-transactions\n", false},
	        {" -- pgtenant: no-transaction\n", false},
	        {"", false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		CHECK_MSG(migrate_is_no_transaction(cases[i].text, strlen(cases[i].text)) ==
		                  cases[i].want,
		          "case %zu", i);
}

int main(void)
{
	test_file_names();
	test_versions_compare_numerically_part_by_part();
	test_checksums_are_flyways();
	test_no_transaction_marker();
	return unit_finish("migrate");
}
