"""An independent reader of AMCT record files: a protobuf message class built
at run time from the field names and numbers of docs/amct-reference.md#record-file, parsed with the
protobuf library's own text-format parser."""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_F = descriptor_pb2.FieldDescriptorProto

_LAYER_FIELDS = [
    ("scale_d", 1, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL),
    ("offset_d", 2, _F.TYPE_INT32, _F.LABEL_OPTIONAL),
    ("scale_w", 3, _F.TYPE_FLOAT, _F.LABEL_REPEATED),
    ("offset_w", 4, _F.TYPE_INT32, _F.LABEL_REPEATED),
    ("shift_bit", 5, _F.TYPE_UINT32, _F.LABEL_REPEATED),
    ("tensor_balance_factor", 6, _F.TYPE_FLOAT, _F.LABEL_REPEATED),
    ("skip_fusion", 9, _F.TYPE_BOOL, _F.LABEL_OPTIONAL),
    ("dst_type", 10, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
    ("act_type", 11, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
    ("wts_type", 12, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
    ("fakequant_precision_mode", 13, _F.TYPE_STRING, _F.LABEL_OPTIONAL),
    ("scale_h", 21, _F.TYPE_FLOAT, _F.LABEL_OPTIONAL),
    ("offset_h", 22, _F.TYPE_INT32, _F.LABEL_OPTIONAL),
    ("scale_r", 23, _F.TYPE_FLOAT, _F.LABEL_REPEATED),
    ("offset_r", 24, _F.TYPE_INT32, _F.LABEL_REPEATED),
]


def _build():
    file_proto = descriptor_pb2.FileDescriptorProto(name="amct_test_record.proto", package="amcttest",
                                                    syntax="proto2")
    layer = file_proto.message_type.add(name="SingleLayerRecord")
    for name, number, ftype, label in _LAYER_FIELDS:
        layer.field.add(name=name, number=number, type=ftype, label=label)
    entry = file_proto.message_type.add(name="MapFiledEntry")
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                    type_name=".amcttest.SingleLayerRecord")
    records = file_proto.message_type.add(name="ScaleOffsetRecord")
    records.field.add(name="record", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                      type_name=".amcttest.MapFiledEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("amcttest.ScaleOffsetRecord"))


ScaleOffsetRecord = _build()


def read_record(path):
    """{layer name: SingleLayerRecord} in file order."""
    with open(path, encoding="utf-8") as f:
        message = text_format.Parse(f.read(), ScaleOffsetRecord())
    return {entry.key: entry.value for entry in message.record}
