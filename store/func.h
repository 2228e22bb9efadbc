/* func.h -- SQL's scalar functions, each declared once.
 *
 * A function is one entry of the table in func.c: its name (and an alias),
 * its parameters with their types, how its result type follows from its
 * arguments', what it checks of its literal arguments when bound, its
 * evaluator, and its category and description. The planner's type check
 * (gd_fn_check), the evaluation (gd_fn_eval, from gd_expr_eval) and the
 * listing (gd_fn_count, gd_fn_at, gd_fn_signature: for SHOW FUNCTIONS,
 * DESCRIBE FUNCTION and the documentation's check) all read that entry.
 * The semantics are ksqlDB's (its function reference), over gamingd's
 * types: where ksqlDB takes or gives a TIMESTAMP, gamingd takes or gives
 * epoch milliseconds as a BIGINT. */
#ifndef GD_FUNC_H
#define GD_FUNC_H

#include "expr.h"

/* What a parameter accepts. */
typedef enum {
    GD_FP_STRING,
    GD_FP_WHOLE,  /* INTEGER or BIGINT */
    GD_FP_NUMBER, /* INTEGER, BIGINT or DOUBLE */
    GD_FP_BOOLEAN,
    GD_FP_MILLIS, /* epoch milliseconds: INTEGER or BIGINT */
    GD_FP_SAME,   /* any type, the same (or a common numeric) for every SAME argument */
    GD_FP_ANY,
    /* STRINGs whose literal values are checked when bound */
    GD_FP_UNIT,     /* a time unit: a word (MINUTES) or a STRING */
    GD_FP_ZONE,     /* a time zone (tz.h), loaded once when a literal */
    GD_FP_PATTERN,  /* a regular expression (server/regex.h) */
    GD_FP_ENCODING, /* hex, utf8, ascii, base64 */
    GD_FP_MASK,     /* one character, or NULL: no masking */
} gd_fn_param_type;

/* What the result is. */
typedef enum {
    GD_FR_STRING,
    GD_FR_BIGINT,
    GD_FR_INTEGER,
    GD_FR_DOUBLE,
    GD_FR_BOOLEAN,
    GD_FR_FIRST,  /* the first argument's type (DOUBLE for a NULL literal) */
    GD_FR_SAME,   /* the common type of the SAME arguments */
    GD_FR_ROUND,  /* ROUND, TRUNC: one argument, a DOUBLE gives a BIGINT; with a scale, the first's type */
} gd_fn_result;

enum {
    GD_FN_NULLS = 1,      /* the evaluator sees NULL arguments (else a NULL argument gives NULL) */
    GD_FN_RANDOM = 2,     /* not a function of its arguments: refused in stored definitions */
    GD_FN_MAX_PARAMS = 6, /* parameters of an entry; past them the last one repeats (max GD_FN_ANY_NUMBER) */
    GD_FN_ANY_NUMBER = 64,
    GD_FN_MAX_RESULT = 1 << 20, /* bytes of a string a function makes; past it the result is NULL */
};

typedef struct gd_fn_call gd_fn_call;

typedef struct {
    const char *name, *alias;
    const char *category; /* STRING, NUMERIC, NULLS, DATE AND TIME, REGULAR EXPRESSION */
    const char *description;
    uint8_t min, max;
    struct {
        const char *name;
        gd_fn_param_type type;
    } params[GD_FN_MAX_PARAMS];
    gd_fn_result result;
    uint8_t flags;
    gd_value (*eval)(const gd_fn_call *c);
    double (*math)(double); /* for the one-argument DOUBLE functions */
} gd_fn;

/* The function named name (case-insensitive, aliases too) and its index
 * (the `index` of a bound GD_E_CALL), or NULL. */
const gd_fn *gd_fn_lookup(gd_str name, int *index);
int gd_fn_count(void);
const gd_fn *gd_fn_at(int index);
/* `NAME(param TYPE, [param TYPE]) -> TYPE` (a repeating one as `param TYPE, ...`). */
void gd_fn_signature(const gd_fn *f, gd_buf *out);
/* The pieces of the signature, for DESCRIBE FUNCTION: how many parameters
 * it lists (the first f->min required; the last repeats when f->max >
 * GD_FN_MAX_PARAMS), a parameter type's name, the result's. */
int gd_fn_nparams(const gd_fn *f);
const char *gd_fn_param_type_name(gd_fn_param_type t);
const char *gd_fn_result_name(const gd_fn *f);

/* Checks a GD_E_CALL whose arguments are bound, and sets its type. false
 * with err, and *arg the argument at fault (-1: the call), when they do not
 * fit. */
bool gd_fn_check(gd_expr *call, gd_arena *arena, int *arg, char *err, size_t errlen);
gd_value gd_fn_eval(const gd_expr *call, const gd_eval *ctx);

#endif
