/* error.c: the texts and class names of mr_err (error.h). */
#include "memrelay/error.h"

static const char *const error_replies[] = {
#define MR_ERR_TEXT(e, name, text) text,
    MR_ERRORS(MR_ERR_TEXT)
#undef MR_ERR_TEXT
};

static const char *const error_classes[] = {
#define MR_ERR_NAME(e, name, text) name,
    MR_ERRORS(MR_ERR_NAME)
#undef MR_ERR_NAME
};

const char *mr_error_reply(mr_err err)
{
    return error_replies[err];
}

const char *mr_error_class(mr_err err)
{
    return err < MR_ERR_COUNT ? error_classes[err] : "?";
}
