/* prom.c -- the one writer of Prometheus's text exposition format (0.0.4),
 * which every /metrics figure goes through (http.c, cluster.c, guard.c,
 * push.c).
 *
 * A label value can come from users or data -- a table's or stream's name,
 * a topic given on the command line -- so it is escaped as the format says
 * (backslash, double quote and newline as \\, \" and \n): unescaped, a quote
 * or a newline in one name would break every scrape or add series of the
 * name's choosing. Help texts are escaped likewise (backslash, newline).
 * Metric and label names are gamingd's own constants. */
#include <stdarg.h>
#include <stdio.h>

#include "routes.h"

static void put_escaped(gd_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') gd_buf_puts(b, "\\\\");
        else if (*s == '\n') gd_buf_puts(b, "\\n");
        else if (*s == '"' && quote) gd_buf_puts(b, "\\\"");
        else gd_buf_putc(b, *s);
    }
}

void gd_prom_family(gd_buf *b, const char *name, const char *type, const char *help)
{
    gd_buf_printf(b, "# HELP %s ", name);
    put_escaped(b, help, false);
    gd_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

void gd_prom_sample(gd_buf *b, const char *name, const char *const *labels, const char *fmt, ...)
{
    gd_buf_puts(b, name);
    for (int i = 0; labels && labels[i]; i += 2) {
        gd_buf_printf(b, "%s%s=\"", i ? "," : "{", labels[i]);
        put_escaped(b, labels[i + 1], true);
        gd_buf_putc(b, '"');
        if (!labels[i + 2]) gd_buf_putc(b, '}');
    }
    gd_buf_putc(b, ' ');
    char value[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    gd_buf_puts(b, value);
    gd_buf_putc(b, '\n');
}
